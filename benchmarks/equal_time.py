"""Trains several networks at the same time, for the same wall clock.

Benchmarks that compare models "at equal training time" on a shared CPU
train them concurrently, so that every run sees the same load for the whole
budget; one after the other, a run would get more or less CPU depending on
what else happens meanwhile. Each run is `python -m tf_ardm.train` with its
flagfile plus extra flags, one epoch (no evaluation pauses) and
`--max_train_minutes` (the clock starts after the first, compiling, step).

A library of the other benchmarks (steps_vs_bits.py, upscale.py), and a
command of its own:

  .venv/bin/python benchmarks/equal_time.py --minutes=5 --workdir=runs/equal \
      oa=configs/digits.cfg wide=configs/digits.cfg:--channels=96

trains each NAME=FLAGFILE[:EXTRA_FLAG...] for --minutes and prints the model
directories and the steps each run took.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def train(runs, workdir, minutes, cwd=None, cpus=None):
  """Trains runs {name: (flagfile, [extra flags])} under workdir/<name>.

  cwd: {name: source checkout} to run a run's `tf_ardm` from (default this
  repository); cpus: {name: CPU index} to pin a run to one core (taskset),
  so that concurrent runs do not share cores.

  Returns {name: trained model directory}. Logs go to workdir/<name>.log;
  a failed run raises SystemExit naming its log.
  """
  cwd, cpus = cwd or {}, cpus or {}
  procs = {}
  for name, (flagfile, extra) in runs.items():
    run_dir = os.path.abspath(os.path.join(workdir, name))
    shutil.rmtree(run_dir, ignore_errors=True)  # No resuming from an earlier run.
    cmd = [sys.executable, "-m", "tf_ardm.train", f"--flagfile={flagfile}", *extra,
           f"--workdir={run_dir}", f"--max_train_minutes={minutes}",
           "--train_steps=100000000", "--steps_per_epoch=100000000", "--noexport"]
    if name in cpus:
      cmd = ["taskset", "-c", str(cpus[name]), *cmd]
    log = open(os.path.join(workdir, f"{name}.log"), "w")
    procs[name] = (run_dir, subprocess.Popen(cmd, cwd=cwd.get(name, REPO), stdout=log,
                                             stderr=log), log)
  for name, (_, proc, log) in procs.items():
    failed = proc.wait()
    log.close()
    if failed:
      raise SystemExit(f"training {name} failed, see {log.name}")
  return {name: os.path.join(run_dir, "model") for name, (run_dir, _, _) in procs.items()}


def _parse_run(spec):
  """NAME=FLAGFILE[:EXTRA_FLAG...] -> (name, (flagfile, [extra flags]))."""
  name, sep, rest = spec.partition("=")
  if not sep or not name or not rest:
    raise argparse.ArgumentTypeError(f"{spec!r} is not NAME=FLAGFILE[:EXTRA_FLAG...]")
  flagfile, *extra = rest.split(":")
  return name, (flagfile, extra)


def main():
  parser = argparse.ArgumentParser(
      description="Trains several configs concurrently for the same wall clock.")
  parser.add_argument("runs", nargs="+", type=_parse_run,
                      help="NAME=FLAGFILE[:EXTRA_FLAG...], e.g. oa=configs/digits.cfg")
  parser.add_argument("--minutes", type=float, default=5.0,
                      help="wall-clock training time of each run, after its first step")
  parser.add_argument("--workdir", default="runs/equal_time", help="work directory")
  args = parser.parse_args()
  runs = dict(args.runs)
  if len(runs) != len(args.runs):
    parser.error("run names must differ")
  os.makedirs(args.workdir, exist_ok=True)
  for name, model_dir in train(runs, args.workdir, args.minutes).items():
    with open(os.path.join(model_dir, "config.json")) as f:
      steps = json.load(f)["trained_steps"]
    print(f"{name}: {model_dir} ({steps} steps)")


if __name__ == "__main__":
  main()
