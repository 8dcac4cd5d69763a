r"""Codec speed: the format-2 (integer) exports against the format-1 (float) ones.

  .venv/bin/python benchmarks/codec_speed.py [--baseline=/tmp/old] \
      [--models=digits,text,photos_upscale4] [--repeats=3]

The format-1 codec is the one of tf_ardm at commit 73df71d: `--baseline` is a
checkout of that commit (its package `tf_ardm/` and its zoo exports
`savedmodels/<model>/codec`). The format-2 codec is this checkout's zoo
(savedmodels/<model>). Each runs in its own worker process (this file with --worker and
PYTHONPATH set to its checkout only, so the two packages never mix), and
each worker loads the export with its own `tf_ardm.coding.coder.load`.

Cases (CASES): digits at budgets 8 and 16 on 64 test datapoints, text at
budget 16 on 16 chunks of 250 characters, photos_upscale4 at budget 4 per
stage on 16 patches; each in two modes: `each`, one stream per datapoint
(Coder.compress_each / decompress_each, full framing), and `solid`, all
datapoints in one stream (Coder.compress / decompress). A timed call is an
encode of the whole set then a decode of its streams, which must give the
data back. The first call of each case and codec (tracing, XLA compilation)
is reported apart; then `--repeats` rounds run interleaved, old, new (XLA:
Coder.set_xla(True)), new (plain TF: set_xla(False)), and the table gives the
medians in seconds. The new codec's XLA and plain streams must be identical.
By default the Coder picks XLA for jobs of at least coder.AUTO_XLA_WORK
position-calls and plain TF, whose first call costs less, below.

The bar: new (XLA) / old <= 1.5 for both encode and decode;
every row says whether it meets it. The ratios come from calls interleaved
in one run on one machine; absolute times move with the machine's load.
Exits 1 when a round trip or the XLA/plain identity fails.
"""
import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # Before any TF import.
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODELS = ("digits", "text", "photos_upscale4")
# (model, budget per stage, test datapoints, modes).
CASES = (
    ("digits", 8, 64, ("each", "solid")),
    ("digits", 16, 64, ("each", "solid")),
    ("text", 16, 16, ("each", "solid")),
    ("photos_upscale4", 4, 16, ("each", "solid")),
)
BAR = 1.5
RESULT = "@@codec_speed "  # Prefix of the worker's reply lines on stdout.


# ------------------------------------------------------------------ worker ---


def _worker_time(coder, x, budget, mode):
  """Times one encode and decode of x [N, *shape]; checks the round trip.

  Returns a dict: encode_s, decode_s (float seconds), bytes (int, all
  streams), sha256 (hex of the streams), ok (bool, decoded == x).
  """
  start = time.perf_counter()
  if mode == "each":
    streams = coder.compress_each(x, budget)
  else:
    streams = [coder.compress(x, budget)]
  mid = time.perf_counter()
  back = coder.decompress_each(streams) if mode == "each" else coder.decompress(streams[0])
  end = time.perf_counter()
  digest = hashlib.sha256()
  for s in streams:
    digest.update(len(s).to_bytes(4, "big") + s)
  return {"encode_s": mid - start, "decode_s": end - mid, "bytes": sum(map(len, streams)),
          "sha256": digest.hexdigest(), "ok": bool(np.array_equal(back, x))}


def worker(root):
  """Serves JSON requests, one a line on stdin, with its checkout's codec.

  Requests: {"op": "load", "path": export} -> package file, load seconds;
  {"op": "time", "x": .npy path, "budget": int, "mode": "each"|"solid",
  "xla": bool or null} -> _worker_time's dict; {"op": "quit"}. Replies are
  one JSON line each on stdout after the RESULT prefix.
  """
  sys.path.insert(0, root)
  import tf_ardm  # pylint: disable=import-outside-toplevel
  try:
    from tf_ardm.coding import coder as coder_lib  # pylint: disable=import-outside-toplevel
  except ImportError:  # A checkout from before coder.py: load was in codec.py.
    from tf_ardm.coding import codec as coder_lib  # pylint: disable=import-outside-toplevel
  coder, arrays = None, {}
  for line in sys.stdin:
    request = json.loads(line)
    if request["op"] == "quit":
      break
    if request["op"] == "load":
      start = time.perf_counter()
      coder = coder_lib.load(request["path"])
      reply = {"package": os.path.abspath(tf_ardm.__file__),
               "load_s": time.perf_counter() - start}
    else:
      if request["xla"] is not None:  # Held for the whole job (else the Coder picks).
        coder.set_xla(bool(request["xla"]))
      if request["x"] not in arrays:
        arrays[request["x"]] = np.load(request["x"])
      reply = _worker_time(coder, arrays[request["x"]], request["budget"], request["mode"])
    print(RESULT + json.dumps(reply), flush=True)


# ------------------------------------------------------------------ parent ---


class Worker:
  """A worker process running one checkout's codec (see `worker`)."""

  def __init__(self, name, root, log_dir):
    self.name, self.root = name, os.path.abspath(root)
    env = dict(os.environ, PYTHONPATH=self.root)
    self.log_path = os.path.join(log_dir, f"{name}.log")
    self.log = open(self.log_path, "w")  # pylint: disable=consider-using-with
    self.process = subprocess.Popen(  # pylint: disable=consider-using-with
        [sys.executable, os.path.abspath(__file__), "--worker", f"--root={self.root}"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log, env=env,
        cwd=self.root, text=True)

  def ask(self, **request):
    """Sends one request; returns the reply dict."""
    self.process.stdin.write(json.dumps(request) + "\n")
    self.process.stdin.flush()
    for line in self.process.stdout:
      if line.startswith(RESULT):
        return json.loads(line[len(RESULT):])
    self.log.flush()
    with open(self.log_path) as f:
      tail = "".join(f.readlines()[-15:])
    raise RuntimeError(f"the {self.name} worker ({self.root}) died:\n{tail}")

  def close(self):
    if self.process.poll() is None:
      self.process.stdin.write(json.dumps({"op": "quit"}) + "\n")
      self.process.stdin.close()
      self.process.wait()
    self.log.close()


def test_data(export, count, out_dir):
  """The first `count` test datapoints of an export's model, saved as .npy;
  returns the file's path."""
  from tf_ardm.config import ModelConfig  # pylint: disable=import-outside-toplevel
  from tf_ardm.data import datasets  # pylint: disable=import-outside-toplevel
  with open(os.path.join(export, "codec", "assets.extra.json")) as f:
    config = ModelConfig.from_json(f.read())
  path = os.path.join(out_dir, f"{config.dataset}_{count}.npy")
  np.save(path, datasets.split(config, "test", limit=count))
  return path


def run_model(name, cases, args, out_dir):
  """Runs a model's cases; returns (rows, first-call rows, load row, ok)."""
  old = Worker("old", args.baseline, out_dir)
  new = Worker("new", REPO, out_dir)
  try:
    loads = {}
    for w, root in ((old, args.baseline), (new, REPO)):
      reply = w.ask(op="load", path=os.path.join(root, "savedmodels", name))
      if not reply["package"].startswith(w.root + os.sep):
        raise RuntimeError(f"the {w.name} worker imported {reply['package']}, "
                           f"not the package under {w.root}")
      loads[w.name] = reply["load_s"]
    rows, firsts, ok = [], [], True
    for _, budget, count, modes in cases:
      x = test_data(os.path.join(REPO, "savedmodels", name), count, out_dir)
      for mode in modes:
        runs = {"old": [], "xla": [], "plain": []}
        order = (("old", old, None), ("xla", new, True), ("plain", new, False))
        for round_ in range(args.repeats + 1):  # Round 0: the first calls.
          for key, w, xla in order:
            runs[key].append(w.ask(op="time", x=x, budget=budget, mode=mode, xla=xla))
            print(f"  [{name} {mode} budget {budget} round {round_} {key}: "
                  f"{runs[key][-1]['encode_s']:.2f} s / {runs[key][-1]['decode_s']:.2f} s]",
                  flush=True)
        every = [r for key in runs for r in runs[key]]
        same = {r["sha256"] for r in runs["xla"] + runs["plain"]}
        if not all(r["ok"] for r in every) or len(same) != 1:
          ok = False
          print(f"  FAILED: {name} {mode} budget {budget}: round trip "
                f"{all(r['ok'] for r in every)}, distinct new streams {len(same)}")
        med = {key: {t: statistics.median(r[t] for r in runs[key][1:])
                     for t in ("encode_s", "decode_s")} for key in runs}
        rows.append((name, mode, budget, count, med, runs["old"][0]["bytes"],
                     runs["xla"][0]["bytes"]))
        firsts.append((name, mode, budget, {key: runs[key][0] for key in runs}))
    return rows, firsts, loads, ok
  finally:
    old.close()
    new.close()


def _table(header, rows):
  rows = [[str(c) for c in row] for row in rows]
  widths = [max(len(r[i]) for r in [header] + rows) for i in range(len(header))]
  for line in [header] + rows:
    print("  " + "  ".join(c.rjust(w) for c, w in zip(line, widths)))


def report(rows, firsts, loads):
  """Prints the tables; returns True when every row meets the bar."""
  print(f"\nMedians of the interleaved rounds, seconds per call on the whole set; "
        f"ratio = new (XLA) / old; bar: <= {BAR} for encode and decode.")
  body, all_meet = [], True
  for name, mode, budget, count, med, old_bytes, new_bytes in rows:
    cells = [name, mode, budget, count]
    meets = True
    for t in ("encode_s", "decode_s"):
      ratio = med["xla"][t] / med["old"][t]
      meets &= ratio <= BAR
      cells += [f"{med['old'][t]:.3f}", f"{med['xla'][t]:.3f}", f"{med['plain'][t]:.3f}",
                f"{ratio:.2f}", f"{med['plain'][t] / med['old'][t]:.2f}"]
    all_meet &= meets
    cells += [old_bytes, new_bytes, "yes" if meets else "NO"]
    body.append(cells)
  _table(["model", "mode", "budget", "N", "old enc", "new enc XLA", "new enc plain",
          "enc new/old", "enc plain/old", "old dec", "new dec XLA", "new dec plain",
          "dec new/old", "dec plain/old", "bytes old", "bytes new", f"meets <= {BAR}"],
         body)
  print("\nFirst calls (tracing and XLA compilation included; the new codec's plain "
        "first call follows its XLA one), seconds")
  _table(["model", "mode", "budget", "old enc", "old dec", "new enc XLA", "new dec XLA",
          "new enc plain", "new dec plain"],
         [(name, mode, budget, *(f"{first[k][t]:.2f}" for k in ("old", "xla", "plain")
                                 for t in ("encode_s", "decode_s")))
          for name, mode, budget, first in firsts])
  print("\nExport load seconds (coder.load)")
  _table(["model", "old", "new"],
         [(name, f"{v['old']:.1f}", f"{v['new']:.1f}") for name, v in loads.items()])
  return all_meet


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--baseline", default="/tmp/old",
                      help="checkout of tf_ardm 73df71d (format-1 codec and its zoo)")
  parser.add_argument("--models", default=",".join(MODELS))
  parser.add_argument("--repeats", type=int, default=3,
                      help="interleaved timed rounds (at least 2)")
  parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
  parser.add_argument("--root", help=argparse.SUPPRESS)
  args = parser.parse_args(argv)
  if args.worker:
    return worker(args.root)
  if args.repeats < 2:
    parser.error("--repeats must be at least 2")
  models = args.models.split(",")
  for name in models:
    if name not in MODELS:
      parser.error(f"unknown model {name}; choose from {','.join(MODELS)}")
    for root in (args.baseline, REPO):
      if not os.path.isfile(os.path.join(root, "savedmodels", name, "codec", "saved_model.pb")):
        parser.error(f"no codec export {root}/savedmodels/{name}/codec")
  if not os.path.isfile(os.path.join(args.baseline, "tf_ardm", "coding", "codec.py")):
    parser.error(f"{args.baseline} is not a tf_ardm checkout")
  sys.path.insert(0, REPO)
  print(f"Codec speed, format 2 ({REPO}) against format 1 ({os.path.abspath(args.baseline)}).")
  print(f"This machine has {os.cpu_count()} CPU cores, shared with other jobs: absolute "
        "times move with its load, so compare the ratios, which come from calls "
        "interleaved in this one run. Load average at start: "
        + ", ".join(f"{v:.2f}" for v in os.getloadavg()))
  start = time.perf_counter()
  rows, firsts, loads, ok = [], [], {}, True
  with tempfile.TemporaryDirectory(prefix="codec_speed_") as out_dir:
    for name in models:
      cases = [c for c in CASES if c[0] == name]
      r, f, load, model_ok = run_model(name, cases, args, out_dir)
      rows, firsts, ok = rows + r, firsts + f, ok and model_ok
      loads[name] = load
  all_meet = report(rows, firsts, loads)
  print(f"\nVerdict: {'every row meets' if all_meet else 'NOT every row meets'} the bar "
        f"new/old <= {BAR}; round trips and XLA/plain identity "
        f"{'hold' if ok else 'FAILED'}. Load average at end: "
        + ", ".join(f"{v:.2f}" for v in os.getloadavg())
        + f"; wall time {time.perf_counter() - start:.0f} s.")
  return 0 if ok else 1


if __name__ == "__main__":
  sys.exit(main())
