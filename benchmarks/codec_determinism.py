r"""Codec determinism under CPU load: concurrent encoders and decoders.

  .venv/bin/python benchmarks/codec_determinism.py --model=runs/demo/model \
      [--processes=2] [--budgets=1,8,64] [--limit=360]

Starts `--processes` encoder processes at once on the digits test set; each
codes every datapoint alone (compress_each) twice, and a solid stream of
100. All streams must be identical across repeats and processes. Then as
many decoder processes, at once, decode another process's streams in
batches of all, 16, 7 and 1 datapoints and the solid stream. The table
counts differing streams and failing batches: every entry must be 0.
"""
import argparse
import os
import pickle
import subprocess
import sys
import tempfile
import time

import numpy as np

BATCHES = (0, 16, 7, 1)  # 0: all datapoints in one call.


def _data(limit):
  from tf_ardm.data import datasets  # pylint: disable=g-import-not-at-top
  return datasets.load("digits").splits["test"][:limit]


def encode(model, budgets, limit, out):
  from tf_ardm.coding import coder as coder_lib  # pylint: disable=g-import-not-at-top
  coder, x = coder_lib.load(model), _data(limit)
  result = {}
  for b in budgets:
    first, second = coder.compress_each(x, b), coder.compress_each(x, b)
    result[b] = (first, sum(s != t for s, t in zip(first, second)),
                 coder.compress(x[:100], b))
  with open(out, "wb") as f:
    pickle.dump(result, f)


def decode(model, budgets, limit, streams, out):
  from tf_ardm.coding import coder as coder_lib  # pylint: disable=g-import-not-at-top
  from tf_ardm.errors import UserError  # pylint: disable=g-import-not-at-top
  coder, x = coder_lib.load(model), _data(limit)
  with open(streams, "rb") as f:
    coded = pickle.load(f)
  result = {}
  for b in budgets:
    each, _, solid = coded[b]
    for size in BATCHES:
      size = size or len(each)
      fails = 0
      for i in range(0, len(each), size):
        try:
          fails += not np.array_equal(coder.decompress_each(each[i:i + size]), x[i:i + size])
        except UserError:
          fails += 1
      result[(b, size)] = fails
    try:
      result[(b, "solid")] = int(not np.array_equal(coder.decompress(solid), x[:100]))
    except UserError:
      result[(b, "solid")] = 1
  with open(out, "wb") as f:
    pickle.dump(result, f)


def _spawn(args):
  return subprocess.Popen([sys.executable, __file__, *args])


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--model", required=True, help="trained model directory or codec export")
  parser.add_argument("--processes", type=int, default=2)
  parser.add_argument("--budgets", default="1,8,64")
  parser.add_argument("--limit", type=int, default=360)
  parser.add_argument("--role", choices=["encode", "decode"], help=argparse.SUPPRESS)
  parser.add_argument("--streams", help=argparse.SUPPRESS)
  parser.add_argument("--out", help=argparse.SUPPRESS)
  args = parser.parse_args()
  budgets = [int(b) for b in args.budgets.split(",")]
  if args.role == "encode":
    return encode(args.model, budgets, args.limit, args.out)
  if args.role == "decode":
    return decode(args.model, budgets, args.limit, args.streams, args.out)

  common = ["--model", args.model, "--budgets", args.budgets, "--limit", str(args.limit)]
  with tempfile.TemporaryDirectory() as tmp:
    enc = [os.path.join(tmp, f"enc{i}.pkl") for i in range(args.processes)]
    dec = [os.path.join(tmp, f"dec{i}.pkl") for i in range(args.processes)]
    start = time.time()
    procs = [_spawn([*common, "--role", "encode", "--out", out]) for out in enc]
    if any(p.wait() for p in procs):
      sys.exit("an encoder process failed")
    encode_s = time.time() - start
    # Decoder i decodes the streams of encoder i + 1.
    procs = [_spawn([*common, "--role", "decode", "--streams", enc[(i + 1) % len(enc)],
                     "--out", out]) for i, out in enumerate(dec)]
    if any(p.wait() for p in procs):
      sys.exit("a decoder process failed")
    decode_s = time.time() - start - encode_s
    encoded = [pickle.load(open(f, "rb")) for f in enc]
    decoded = [pickle.load(open(f, "rb")) for f in dec]

  print(f"{args.processes} concurrent processes on {os.cpu_count()} CPUs, {args.limit} digits; "
        f"encode {encode_s:.0f} s, decode {decode_s:.0f} s (wall)")
  header = ["budget", "repeat diffs", "process diffs",
            *[f"fail b={s or 'all'}" for s in BATCHES], "fail solid"]
  rows = []
  bad = 0
  for b in budgets:
    repeat = sum(e[b][1] for e in encoded)
    across = sum(sum(s != t for s, t in zip(encoded[0][b][0], e[b][0])) +
                 (encoded[0][b][2] != e[b][2]) for e in encoded[1:])
    fails = [sum(d[(b, s or args.limit)] for d in decoded) for s in BATCHES]
    solid = sum(d[(b, "solid")] for d in decoded)
    bad += repeat + across + sum(fails) + solid
    rows.append([b, repeat, across, *fails, solid])
  widths = [max(len(str(h)), 6) for h in header]
  print("  ".join(h.rjust(w) for h, w in zip(header, widths)))
  for row in rows:
    print("  ".join(str(v).rjust(w) for v, w in zip(row, widths)))
  print("all identical and exact" if not bad else f"FAILED: {bad} mismatches")
  sys.exit(1 if bad else 0)


if __name__ == "__main__":
  main()
