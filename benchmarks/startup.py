r"""Start-up time of the codec commands (issue 17), wall clock per subprocess.

  .venv/bin/python benchmarks/startup.py [--models=digits,text,text_bytes] [--repeats=3]

For each shipped model in savedmodels/ it times, as fresh subprocesses of
the same Python: `python -c "import tensorflow"`, then `python -m
tf_ardm.compress` and `python -m tf_ardm.decompress` of one datapoint (the
digit of tests/fixtures/v2/digit0.png, or a 32-character text), a first run
and then repeated runs (the codec keeps no on-disk cache: the two rows
differ by noise only), at the default budget (min(D, 100)). It prints
seconds (median of the repeats) and the margin of each command over
`import tensorflow` (the acceptance bar of issue 17: a margin of at most
2 s, from the second run on).
"""
import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def timed(args, env):
  """Wall-clock seconds of one subprocess; raises on a non-zero exit."""
  start = time.perf_counter()
  done = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True)
  seconds = time.perf_counter() - start
  if done.returncode:
    raise RuntimeError(f"{' '.join(args)} failed:\n{done.stderr[-2000:]}")
  return seconds


def datapoint(model, workdir):
  """Path of one datapoint file for `model` (written into workdir)."""
  if model == "digits":
    src = os.path.join(ROOT, "tests", "fixtures", "v2", "digit0.png")
    path = os.path.join(workdir, "digit.png")
    shutil.copy(src, path)
  else:
    path = os.path.join(workdir, "chunk.txt")
    with open(path, "w") as f:
      f.write("the quick brown fox jumps over the lazy dog "[:32])
  return path


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--models", default="digits,text,text_bytes")
  parser.add_argument("--repeats", type=int, default=3)
  args = parser.parse_args()
  env = dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="3")
  py = sys.executable
  imports = statistics.median(timed([py, "-c", "import tensorflow"], env)
                              for _ in range(args.repeats))
  print(f"import tensorflow: {imports:.2f} s (median of {args.repeats})")
  print(f"{'model':<11} {'run':<6} {'compress':>9} {'decompress':>11} {'margin c':>9} "
        f"{'margin d':>9}")
  for model in args.models.split(","):
    path = os.path.join(ROOT, "savedmodels", model)
    with tempfile.TemporaryDirectory() as workdir:
      src = datapoint(model, workdir)
      ardm, out = os.path.join(workdir, "x.ardm"), os.path.join(workdir, "out")

      def once():
        for p in (ardm, out):
          if os.path.exists(p):
            os.remove(p)
        c = timed([py, "-m", "tf_ardm.compress", f"--model={path}", src, ardm], env)
        d = timed([py, "-m", "tf_ardm.decompress", f"--model={path}", ardm, out], env)
        with open(src, "rb") as a, open(out, "rb") as b:
          if a.read() != b.read():
            raise RuntimeError(f"{model}: the round trip changed the data")
        return c, d

      rows = [("first", [once()])]
      rows.append(("second", [once() for _ in range(args.repeats)]))
      for name, runs in rows:
        c = statistics.median(r[0] for r in runs)
        d = statistics.median(r[1] for r in runs)
        print(f"{model:<11} {name:<6} {c:9.2f} {d:11.2f} {c - imports:9.2f} "
              f"{d - imports:9.2f}", flush=True)


if __name__ == "__main__":
  main()
