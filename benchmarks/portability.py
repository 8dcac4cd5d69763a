r"""Codec portability across TF builds, oneDNN, XLA, threads and batch sizes.

  .venv/bin/python benchmarks/portability.py [--models=digits,text,photos_upscale4] \
      [--count=64] [--budget=8] [--batches=1,7,16,64] [--builds=tf214,tf217] [--quick] \
      [--conv=both|direct|im2col] \
      [--out=results.json]

For each model, the first `--count` datapoints of its test split are coded
in every environment of the cross product
  build    tf214: .venv-tf214 (Python 3.11, TF 2.14, tensorflow-compression
           2.14.1); tf217: .venv (Python 3.12, TF 2.17,
           tensorflow-compression-ops 2.17.0): the Makefile's two stacks,
           made by `make install STACK=<build>` when missing (minutes);
  oneDNN   TF_ENABLE_ONEDNN_OPTS=1 / 0;
  XLA      TF_XLA_FLAGS="--tf_xla_auto_jit=2 --tf_xla_cpu_global_jit" / unset;
  threads  1 (taskset to one CPU, TF_NUM_INTRAOP_THREADS=TF_NUM_INTEROP_THREADS=1)
           / 2 (two CPUs, TF_NUM_INTRAOP_THREADS=2),
and, with `--conv=both` (the default) or `--conv=im2col`, the codec path a
GPU takes, on this CPU: 3x3 convolutions as im2col and matmul
(Codec.direct_conv False, which the Coder sets where a GPU is visible), for
each build with oneDNN on, XLA off and on, 2 threads (`--conv=im2col`
runs these after one reference environment of the default path). Each
environment runs in one benchmarks/portability_worker.py process, one at a
time. A
worker encodes at every batch size, hashes the streams and decodes them
again; every worker after the first also decodes the first environment's
streams.

Why that covers every (encoder environment, decoder environment, batch
size) pairing: the decoder is a deterministic function of its streams
(and the export), so if all environments produce byte-identical streams at
every batch size and each decodes its own exactly, each decodes any
other's exactly. The cross decode of environment 0's streams shows it
directly. `--quick` runs the current build only, XLA off, batches 1,7
(for tests): oneDNN on with 1 thread, oneDNN off with 2, and the im2col
environment (oneDNN on, 2 threads), which covers each setting both ways.

Prints one table per model (a row per environment: the first batch size's
streams sha256 and bytes, encode and decode seconds summed over the batch
sizes) and a summary line;
exits 1 unless every model's verdict `every_pairing_exact` holds and every
worker ran in the environment it was asked for, 2 on bad arguments.
"""
import argparse
import dataclasses
import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # Before tf_ardm imports TF.
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
from tf_ardm.errors import UserError  # noqa: E402  pylint: disable=wrong-import-position

WORKER = os.path.join(REPO, "benchmarks", "portability_worker.py")
# Build name (the Makefile's STACK) -> its virtual environment (relative to the repository).
BUILDS = {"tf214": ".venv-tf214", "tf217": ".venv"}
XLA_FLAGS = "--tf_xla_auto_jit=2 --tf_xla_cpu_global_jit"
MODELS = ("digits", "text", "photos_upscale4")
QUICK_BATCHES = (1, 7)
# Variables the harness sets itself; inherited values are dropped.
_CONTROLLED = ("TF_ENABLE_ONEDNN_OPTS", "TF_XLA_FLAGS", "TF_ARDM_XLA", "TF_ARDM_CONV",
               "TF_NUM_INTRAOP_THREADS",
               "TF_NUM_INTEROP_THREADS", "PYTHONPATH", "PYTHONHOME")


@dataclasses.dataclass(frozen=True)
class Env:
  """One environment: a Python (with its TF build) and the variables set for it."""
  build: str
  python: str
  onednn: bool
  xla: bool
  threads: int
  conv: str = "direct"  # Or "im2col": the GPU's convolution path.

  def label(self):
    return (f"{self.build} oneDNN={'on' if self.onednn else 'off'} "
            f"XLA={'on' if self.xla else 'off'} threads={self.threads}"
            + (" conv=im2col" if self.conv == "im2col" else ""))

  def variables(self, base=None):
    """The worker's process environment: `base` (os.environ) with ours set."""
    env = {k: v for k, v in (os.environ if base is None else base).items()
           if k not in _CONTROLLED}
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    env["TF_ENABLE_ONEDNN_OPTS"] = "1" if self.onednn else "0"
    if self.xla:
      env["TF_XLA_FLAGS"] = XLA_FLAGS
    # A format-2 codec export runs its integer network under XLA or not.
    env["TF_ARDM_XLA"] = "1" if self.xla else "0"
    env["TF_ARDM_CONV"] = self.conv
    env["TF_NUM_INTRAOP_THREADS"] = str(self.threads)
    if self.threads == 1:
      env["TF_NUM_INTEROP_THREADS"] = "1"
    return env

  def command(self, args):
    """argv of the worker with `args`, pinned to `threads` CPUs by taskset."""
    cpus = sorted(os.sched_getaffinity(0))[:self.threads]
    prefix = []
    if shutil.which("taskset") and cpus:
      prefix = ["taskset", "-c", ",".join(map(str, cpus))]
    return [*prefix, self.python, WORKER, *args]


def build_python(build):
  """The python executable of a build's virtual environment (may not exist yet)."""
  if build not in BUILDS:
    raise UserError(f"unknown build {build!r}; choose from {', '.join(BUILDS)}")
  return os.path.join(REPO, BUILDS[build], "bin", "python")


def current_build():
  """(name, python) of the TF build running this process, e.g. ("tf214", sys.executable)."""
  try:
    version = importlib.metadata.version("tensorflow")
  except importlib.metadata.PackageNotFoundError:
    raise UserError("this Python has no tensorflow; run it with .venv/bin/python") from None
  return "tf" + "".join(version.split(".")[:2]), sys.executable


def environments(builds=("tf214", "tf217"), quick=False, conv="both"):
  """The Envs to run, in order; env 0's streams are the cross-decoding reference.

  builds: build names (keys of BUILDS); quick: the current build only, XLA
  off, oneDNN on with 1 thread and off with 2 (`builds` is then ignored); conv:
  'direct' (the matrix), 'both' (the matrix, then the im2col environments)
  or 'im2col' (the matrix's first environment, then the im2col ones).
  """
  if quick:
    pythons, xlas = [current_build()], [False]
  else:
    pythons, xlas = [(b, build_python(b)) for b in builds], [False, True]
  envs = [Env(build, python, onednn, xla, threads)
          for build, python in pythons for onednn in (True, False)
          for xla in xlas for threads in (1, 2)
          if not quick or (onednn, threads) in ((True, 1), (False, 2))]
  if conv not in ("direct", "both", "im2col"):
    raise UserError(f"--conv={conv}: choose direct, both or im2col")
  im2col = [Env(build, python, True, xla, 2, "im2col")
            for build, python in pythons for xla in xlas]
  return {"direct": envs, "both": envs + im2col, "im2col": envs[:1] + im2col}[conv]


def ensure_env(build, log=print):
  """The python of a build's virtual environment, after `make install STACK=<build>`.

  The Makefile creates the environment when it is missing and installs
  setup.py's pins for its Python (minutes); up to date, it does nothing.
  UserError when it fails.
  """
  python = build_python(build)
  log(f"make install STACK={build} ({BUILDS[build]})")
  done = subprocess.run(["make", "-C", REPO, "--no-print-directory", "install", f"STACK={build}"],
                        capture_output=True, text=True, check=False)
  if done.returncode:
    lines = (done.stderr or done.stdout).strip().splitlines() or ["(no output)"]
    raise UserError(f"make install STACK={build} failed (exit {done.returncode}): {lines[-1]}")
  return python


def prepare_data(root, count, path):
  """Saves the first `count` test datapoints of the model at `root` to `path` (.npy).

  Returns the int32 array [count, *shape]. Imports tf_ardm (the running stack).
  """
  from tf_ardm.data import datasets  # pylint: disable=g-import-not-at-top
  from tf_ardm.serving import servable  # pylint: disable=g-import-not-at-top
  _, config = servable.load(root)
  x = np.asarray(datasets.split(config, "test", limit=count), np.int32)
  np.save(path, x)
  return x


def run_worker(env, codec, data, budget, batches, out, reference=None, save_streams=None,
               timeout=3600):
  """Runs one worker; its result dict, or {"error": ...} when it produced none.

  out: where the worker writes its JSON; a log of its output goes beside it
  (out + ".log"). A crash, a non-zero exit or a timeout is reported in
  "error", never raised.
  """
  args = [f"--codec={codec}", f"--data={data}", f"--budget={budget}",
          "--batches=" + ",".join(map(str, batches)), f"--out={out}"]
  if reference:
    args.append(f"--reference={reference}")
  if save_streams:
    args.append(f"--save_streams={save_streams}")
  if not os.access(env.python, os.X_OK):
    return {"error": f"cannot start {env.python}: no such executable", "wall_s": 0.0}
  if os.path.exists(out):
    os.remove(out)
  start = time.perf_counter()
  try:
    with open(out + ".log", "w") as log:
      done = subprocess.run(env.command(args), env=env.variables(), stdout=log,
                            stderr=subprocess.STDOUT, timeout=timeout, check=False)
    rc = done.returncode
  except subprocess.TimeoutExpired:
    rc = "timeout"
  except OSError as e:
    return {"error": f"cannot start {env.python}: {e.strerror}", "wall_s": 0.0}
  wall = round(time.perf_counter() - start, 1)
  if rc == 0 and os.path.exists(out):
    with open(out) as f:
      result = json.load(f)
    result["wall_s"] = wall
    return result
  with open(out + ".log") as f:
    tail = [line.strip() for line in f.read().strip().splitlines()[-1:]]
  why = ("timed out after %d s" % timeout if rc == "timeout" else
         f"killed by signal {-rc}" if rc < 0 else f"exit status {rc}")
  return {"error": f"worker {why}: {tail[0] if tail else '(no output)'}"[:300], "wall_s": wall}


def run_matrix(envs, codec, data, budget, batches, workdir, log=print, timeout=3600):
  """Runs every env's worker in turn; their result dicts in env order.

  Env 0 saves its streams; every later worker decodes them (--reference).
  """
  reference = os.path.join(workdir, "env0_streams.npz")
  results = []
  for i, env in enumerate(envs):
    result = run_worker(env, codec, data, budget, batches,
                        os.path.join(workdir, f"env{i}.json"),
                        reference=reference if i and os.path.exists(reference) else None,
                        save_streams=None if i else reference, timeout=timeout)
    log(f"  [{i + 1}/{len(envs)}] {env.label()}: "
        f"{result.get('error') or 'ok'} ({result.get('wall_s', 0):.0f} s)")
    results.append(result)
  return results


def _reference_error(reference):
  """The first error of a reference decode, or None."""
  if not reference:
    return None
  entries = reference.get("batches", {}).values()
  return reference.get("error") or next((e["error"] for e in entries if e.get("error")), None)


def _hashes(result, batches):
  return [result.get("batches", {}).get(str(b), {}).get("sha256") for b in batches]


def env_mismatches(env, result):
  """Ways the worker's environment differs from what `env` asked for (strings)."""
  seen = result.get("env")
  if not seen:
    return []
  out = []
  if seen.get("onednn_enabled") is not None and seen["onednn_enabled"] != env.onednn:
    out.append(f"oneDNN reported {'on' if seen['onednn_enabled'] else 'off'}")
  if seen.get("intra_op_threads") not in (None, env.threads):
    out.append(f"{seen['intra_op_threads']} intra-op threads")
  affinity = seen.get("cpu_affinity")
  if affinity is not None and len(affinity) > env.threads:
    out.append(f"{len(affinity)} CPUs allowed")
  if (seen.get("variables", {}).get("TF_XLA_FLAGS") == XLA_FLAGS) != env.xla:
    out.append("TF_XLA_FLAGS not as asked")
  if result.get("direct_conv") is not None and result["direct_conv"] != (env.conv == "direct"):
    out.append(f"direct_conv {result['direct_conv']}")
  return out


def compare(envs, results, batches):
  """The verdict of one model over the environments' results.

  Returns a dict:
    rows: one per env (build, onednn, xla, threads, sha256 (first batch
      size's, full hex), same_batches, equal_env0, own_exact, env0_exact
      (None for env 0 itself), bytes, encode_s, decode_s, error (the first of
      the worker's own), env0_error (the first decoding env 0's streams),
      mismatches);
    environments: M; byte_identical_count: N, the envs whose streams are
      identical across batch sizes and equal to env 0's at each;
    byte_identical: N == M;
    own_round_trips_exact: every env decoded its own streams exactly at
      every batch size;
    cross_decodes_exact: every env after the first decoded env 0's streams
      exactly at every batch size;
    every_pairing_exact: all three, the portability verdict;
    environments_as_requested: no worker reported another oneDNN setting,
      thread count, CPU set or XLA flags than asked for.
  """
  base = _hashes(results[0], batches) if results else []
  rows = []
  for i, (env, r) in enumerate(zip(envs, results)):
    hashes = _hashes(r, batches)
    entries = list(r.get("batches", {}).values())
    ref = r.get("reference")
    error = r.get("error") or next((e["error"] for e in entries if e.get("error")), None)
    if i and ref is None and not r.get("error"):
      error = error or "no reference decode (env 0 saved no streams)"
    rows.append({
        "build": env.build, "onednn": env.onednn, "xla": env.xla, "threads": env.threads,
        "conv": env.conv,
        "sha256": hashes[0] if hashes else None,
        "same_batches": bool(r.get("identical_across_batches")),
        "equal_env0": None not in hashes and hashes == base,
        "own_exact": bool(r.get("own_exact")) and not r.get("error"),
        "env0_exact": None if i == 0 else bool(ref and ref.get("exact")),
        "bytes": entries[0]["bytes"] if entries else None,
        "encode_s": sum(e["encode_s"] or 0 for e in entries),
        "decode_s": sum(e["decode_s"] or 0 for e in entries),
        "error": error, "env0_error": _reference_error(ref),
        "mismatches": env_mismatches(env, r)})
  identical = sum(row["same_batches"] and row["equal_env0"] for row in rows)
  verdict = {
      "rows": rows, "environments": len(rows), "byte_identical_count": identical,
      "byte_identical": bool(rows) and identical == len(rows),
      "own_round_trips_exact": bool(rows) and all(row["own_exact"] for row in rows),
      "cross_decodes_exact": bool(rows) and all(row["env0_exact"] for row in rows[1:]),
      "environments_as_requested": not any(row["mismatches"] for row in rows)}
  verdict["every_pairing_exact"] = (verdict["byte_identical"] and
                                    verdict["own_round_trips_exact"] and
                                    verdict["cross_decodes_exact"])
  return verdict


def _yes(value):
  return "-" if value is None else "yes" if value else "NO"


def table(verdict):
  """The verdict's rows as a fixed-width text table, then notes on errors."""
  header = ["build", "oneDNN", "XLA", "thr", "conv", "sha256", "same B", "= env0",
            "own exact", "env0 exact", "bytes", "enc s", "dec s"]
  lines, notes = [], []
  for i, row in enumerate(verdict["rows"]):
    lines.append([row["build"], "on" if row["onednn"] else "off", "on" if row["xla"] else "off",
                  str(row["threads"]), row.get("conv", "direct"), (row["sha256"] or "-")[:12],
                  _yes(row["same_batches"]),
                  _yes(row["equal_env0"]), _yes(row["own_exact"]), _yes(row["env0_exact"]),
                  str(row["bytes"] if row["bytes"] is not None else "-"),
                  f"{row['encode_s']:.1f}", f"{row['decode_s']:.1f}"])
    if row["error"]:
      notes.append(f"  env {i}: {row['error']}")
    if row["env0_error"]:
      notes.append(f"  env {i} decoding env 0's streams: {row['env0_error']}")
    if row["mismatches"]:
      notes.append(f"  env {i}: not the environment asked for: {', '.join(row['mismatches'])}")
  widths = [max(len(r[c]) for r in [header, *lines]) for c in range(len(header))]
  text = ["  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip() for r in [header, *lines]]
  return "\n".join(text + notes)


def summary(model, verdict):
  """The one-line summary of a model's verdict."""
  return (f"{model}: {verdict['byte_identical_count']}/{verdict['environments']} environments "
          f"byte-identical; every pairing decodes exactly: "
          f"{'yes' if verdict['every_pairing_exact'] else 'no'}")


def codec_dir(root):
  """The codec export of the export root `root`; UserError when it has none."""
  codec = os.path.join(root, "codec")
  if not os.path.isfile(os.path.join(codec, "saved_model.pb")):
    raise UserError(f"{root} has no codec export ({codec}/saved_model.pb)")
  return codec


def check_model(root, envs, count, budget, batches, workdir, log=print, timeout=3600):
  """Prepares the data of the model at `root`, runs the matrix, returns compare()'s verdict.

  The verdict also holds "results" (the workers' raw results), "count" and "data_shape".
  """
  codec = codec_dir(root)
  os.makedirs(workdir, exist_ok=True)
  data = os.path.join(workdir, "x.npy")
  x = prepare_data(root, count, data)
  results = run_matrix(envs, codec, data, budget, batches, workdir, log=log, timeout=timeout)
  verdict = compare(envs, results, batches)
  verdict.update(results=results, count=len(x), data_shape=list(x.shape))
  return verdict


def _ints(text):
  try:
    values = [int(v) for v in text.split(",") if v.strip()]
  except ValueError:
    raise argparse.ArgumentTypeError(f"not a list of integers: {text!r}") from None
  if not values or min(values) < 1:
    raise argparse.ArgumentTypeError(f"need positive integers, got {text!r}")
  return values


def _names(text):
  return [v.strip() for v in text.split(",") if v.strip()]


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--models", type=_names, default=list(MODELS),
                      help="models of savedmodels/ (their codec/ exports)")
  parser.add_argument("--count", type=int, default=64, help="test datapoints per model")
  parser.add_argument("--budget", type=int, default=8)
  parser.add_argument("--batches", type=_ints, default=[1, 7, 16, 64])
  parser.add_argument("--builds", type=_names, default=list(BUILDS))
  parser.add_argument("--quick", action="store_true",
                      help="current build, oneDNN on/off, threads 1/2, XLA off, batches 1,7")
  parser.add_argument("--conv", default="both", choices=["direct", "both", "im2col"],
                      help="add the GPU's im2col convolution path (module doc)")
  parser.add_argument("--timeout", type=int, default=3600, help="seconds per worker")
  parser.add_argument("--out", help="write the verdicts and raw results to this JSON file")
  args = parser.parse_args(argv)
  if args.count < 1:
    parser.error("--count must be >= 1")
  batches = list(QUICK_BATCHES) if args.quick else args.batches
  start = time.perf_counter()
  try:
    roots = {model: os.path.join(REPO, "savedmodels", model) for model in args.models}
    for root in roots.values():
      codec_dir(root)
    if not args.quick:
      for build in args.builds:
        ensure_env(build)
    envs = environments(args.builds, args.quick, args.conv)
    failed, report = False, {}
    with tempfile.TemporaryDirectory(prefix="portability-") as tmp:
      for model, root in roots.items():
        print(f"{model}: {len(envs)} environments, {args.count} test datapoints, budget "
              f"{args.budget}, batches {','.join(map(str, batches))}", flush=True)
        verdict = check_model(root, envs, args.count, args.budget, batches,
                              os.path.join(tmp, model), log=lambda s: print(s, flush=True),
                              timeout=args.timeout)
        print(table(verdict))
        print(summary(model, verdict), flush=True)
        failed |= not (verdict["every_pairing_exact"] and verdict["environments_as_requested"])
        report[model] = verdict
  except UserError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  wall = time.perf_counter() - start
  print(f"wall time {wall:.0f} s")
  if args.out:
    with open(args.out, "w") as f:
      json.dump({"args": vars(args), "wall_s": round(wall, 1), "models": report,
                 "environments": [dataclasses.asdict(e) for e in envs]}, f, indent=1)
  return 1 if failed else 0


if __name__ == "__main__":
  sys.exit(main())
