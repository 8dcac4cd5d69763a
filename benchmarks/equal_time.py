"""Trains several networks at the same time, for the same wall clock.

Benchmarks that compare models "at equal training time" on a shared CPU
train them concurrently, so that every run sees the same load for the whole
budget; one after the other, a run would get more or less CPU depending on
what else happens meanwhile. Each run is `python -m tf_ardm.train` with its
flagfile plus extra flags, one epoch (no evaluation pauses) and
`--max_train_minutes` (the clock starts after the first, compiling, step).
"""
import os
import shutil
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def train(runs, workdir, minutes):
  """Trains runs {name: (flagfile, [extra flags])} under workdir/<name>.

  Returns {name: trained model directory}. Logs go to workdir/<name>.log;
  a failed run raises SystemExit naming its log.
  """
  procs = {}
  for name, (flagfile, extra) in runs.items():
    run_dir = os.path.join(workdir, name)
    shutil.rmtree(run_dir, ignore_errors=True)  # No resuming from an earlier run.
    cmd = [sys.executable, "-m", "tf_ardm.train", f"--flagfile={flagfile}", *extra,
           f"--workdir={run_dir}", f"--max_train_minutes={minutes}",
           "--train_steps=100000000", "--steps_per_epoch=100000000", "--noexport"]
    log = open(os.path.join(workdir, f"{name}.log"), "w")
    procs[name] = (run_dir, subprocess.Popen(cmd, cwd=REPO, stdout=log, stderr=log), log)
  for name, (_, proc, log) in procs.items():
    failed = proc.wait()
    log.close()
    if failed:
      raise SystemExit(f"training {name} failed, see {log.name}")
  return {name: os.path.join(run_dir, "model") for name, (run_dir, _, _) in procs.items()}
