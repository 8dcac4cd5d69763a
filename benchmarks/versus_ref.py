r"""Training throughput and quality of this checkout against another revision.

Checks out --ref (e.g. the main of an earlier day) into a scratch git
worktree and trains the same config with both at the same time, for the
same wall clock, each pinned to its own CPU core (equal_time.train): the
load of a shared machine falls on both alike, and the ratio is what counts.
Each trained model is then scored by its own code on the test split
(`tf_ardm.evaluate`, --passes ELBO passes of the EMA weights), and a table
gives steps, examples/s, the ratio and test bits/dim:

  .venv/bin/python benchmarks/versus_ref.py --ref=ffced2e --minutes=10 \
      --config=configs/digits.cfg

Extra training flags for one side: --ours_flags / --ref_flags (space
separated). Exits 1 when --min_ratio is given and not reached, or ours is
worse than the reference by more than twice the standard errors combined.
"""
import argparse
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import equal_time  # pylint: disable=g-import-not-at-top,wrong-import-position

from tf_ardm.cli import flags as model_flags  # pylint: disable=wrong-import-position

FLAGS = model_flags.FLAGS
REPO = equal_time.REPO
_ELBO = re.compile(r"negative ELBO \((\d+) passes\): ([0-9.]+) ± ([0-9.]+)")


def batch_size(flagfile, extra):
  """The global batch size of a run, as the command layer's flags read it
  (nested flagfiles, defaults and the run's extra flags included)."""
  FLAGS.unparse_flags()
  FLAGS([sys.argv[0], f"--flagfile={flagfile}", *extra])
  return FLAGS.batch_size


def evaluate(model_dir, cwd, passes, cpu=None):
  """(mean, standard error) test negative ELBO of a model, by the code in cwd."""
  cmd = [sys.executable, "-m", "tf_ardm.evaluate", f"--model={model_dir}",
         "--split=test", f"--passes={passes}"]
  if cpu is not None:
    cmd = ["taskset", "-c", str(cpu), *cmd]
  out = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, check=False)
  match = _ELBO.search(out.stdout)
  if out.returncode or not match:
    raise SystemExit(f"evaluating {model_dir} failed:\n{out.stdout}\n{out.stderr[-3000:]}")
  return float(match.group(2)), float(match.group(3))


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--ref", required=True, help="git revision to compare against")
  parser.add_argument("--config", default="configs/digits.cfg", help="flagfile of both runs")
  parser.add_argument("--minutes", type=float, default=10.0,
                      help="training wall clock of each run, after its first step")
  parser.add_argument("--passes", type=int, default=8, help="test ELBO passes")
  parser.add_argument("--ours_flags", default="", help="extra training flags of ours")
  parser.add_argument("--ref_flags", default="", help="extra training flags of the ref")
  parser.add_argument("--cpus", default="0,1", help="cores of ref,ours (one each)")
  parser.add_argument("--workdir", default="runs/versus_ref", help="work directory")
  parser.add_argument("--min_ratio", type=float, default=None,
                      help="exit 1 unless ours reaches this examples/s ratio")
  args = parser.parse_args()
  cpus = dict(zip(("ref", "ours"), (int(c) for c in args.cpus.split(","))))
  workdir = os.path.abspath(args.workdir)
  os.makedirs(workdir, exist_ok=True)
  checkout = tempfile.mkdtemp(prefix="versus_ref_")
  os.rmdir(checkout)
  subprocess.run(["git", "worktree", "add", "--detach", "-q", checkout, args.ref],
                 cwd=REPO, check=True)
  try:
    rev = subprocess.run(["git", "rev-parse", "--short", args.ref], cwd=REPO, check=True,
                         capture_output=True, text=True).stdout.strip()
    runs = {"ref": (args.config, args.ref_flags.split()),
            "ours": (args.config, args.ours_flags.split())}
    batches = {name: batch_size(os.path.join(REPO, flagfile), extra)
               for name, (flagfile, extra) in runs.items()}
    print(f"training ref ({args.ref} = {rev}) on core {cpus['ref']} and ours on core "
          f"{cpus['ours']}, {args.minutes:g} min each, {args.config}", flush=True)
    dirs = equal_time.train(runs, workdir, args.minutes, cwd={"ref": checkout}, cpus=cpus)
    rows = {}
    for name, model_dir in dirs.items():
      with open(os.path.join(model_dir, "config.json")) as f:
        steps = json.load(f)["trained_steps"]
      where = checkout if name == "ref" else REPO
      mean, se = evaluate(model_dir, where, args.passes, cpus[name])
      rows[name] = dict(steps=steps, rate=(steps - 1) * batches[name] / (60.0 * args.minutes),
                        bpd=mean, se=se)
  finally:
    subprocess.run(["git", "worktree", "remove", "--force", checkout], cwd=REPO, check=False)
    shutil.rmtree(checkout, ignore_errors=True)
  ratio = rows["ours"]["rate"] / rows["ref"]["rate"]
  print(f"\n| run | steps | examples/s | ratio | test bits/dim ({args.passes} passes) |")
  print("|---|---|---|---|---|")
  for name in ("ref", "ours"):
    r = rows[name]
    print(f"| {name} | {r['steps']} | {r['rate']:.1f} | "
          f"{r['rate'] / rows['ref']['rate']:.2f} | {r['bpd']:.4f} ± {r['se']:.4f} |")
  diff = rows["ours"]["bpd"] - rows["ref"]["bpd"]
  noise = 2.0 * math.hypot(rows["ours"]["se"], rows["ref"]["se"])
  print(f"\nexamples/s ratio ours/ref: {ratio:.2f}; test bits/dim ours - ref: {diff:+.4f} "
        f"(2 standard errors: {noise:.4f})")
  failed = (args.min_ratio is not None and ratio < args.min_ratio) or diff > noise
  print("verdict:", "FAIL" if failed else "PASS")
  sys.exit(1 if failed else 0)


if __name__ == "__main__":
  main()
