"""Fuzzes the ARDM codec's decoder: no mutated stream may decode to wrong data.

Builds a digits codec (an untrained model, or --model=DIR: an export or a
trained model directory), encodes test digits as single-datapoint and solid
streams, in the full and the lean framing of stream format 2, at small
budgets, then decodes mutated copies: bit flips, byte changes, truncations, extensions, random
tails, random bytes, splices of two streams, and streams of another model.
Each case ends as

  clear error   a one-line UserError (what the CLI prints),
  exact         the original data (a mutation that changed nothing),
  other valid   another valid stream's data: the mutation made a stream
                that its data re-encodes to byte for byte (a splice of a
                whole other stream),
  wrong data    any other data: must never happen,
  crash         any other exception, or the process dying: must never happen.

Cases run in worker subprocesses, so that a crash is counted, not fatal.

Usage: python benchmarks/codec_fuzz.py [--cases=10000] [--seed=0] [--model=DIR]
Exit status 1 unless wrong data and crashes are both 0.
"""
import argparse
import collections
import os
import subprocess
import sys

import numpy as np
import tensorflow as tf

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tf_ardm import seeding  # noqa: E402
from tf_ardm.coding import codec  # noqa: E402
from tf_ardm.coding import coder as coder_lib  # noqa: E402
from tf_ardm.coding import stream  # noqa: E402
from tf_ardm.config import ModelConfig  # noqa: E402
from tf_ardm.data import datasets  # noqa: E402
from tf_ardm.errors import UserError  # noqa: E402
from tf_ardm.models.ardm import OAARDM  # noqa: E402

OUTCOMES = ("clear error", "exact", "other valid", "wrong data", "crash")
KINDS = ("flip", "byte", "truncate", "extend", "tail", "random", "splice", "foreign")


def _coder(model_dir, seed):
  """A digits Coder: the model in model_dir (export or trained model
  directory), or an untrained one."""
  if model_dir and seed == 0:
    return coder_lib.load(model_dir)
  seeding.set_random_seed(seed)
  model = OAARDM(ModelConfig("digits", "image", [8, 8, 1], 17, "unet",
                             dict(channels=16, num_res_blocks=1)))
  model.heldout_loss_components = np.linspace(2, 0.1, 64, dtype=np.float32) / 64
  return coder_lib.Coder(codec.Codec(model, codec.calibration_data(model.config)), model.config)


def mutate(rng, kind, data, other, foreign):
  """A mutated copy of stream `data` (bytes)."""
  pos = int(rng.integers(len(data)))
  if kind == "flip":
    out = bytearray(data)
    for _ in range(int(rng.integers(1, 4))):
      i = int(rng.integers(len(out)))
      out[i] ^= 1 << int(rng.integers(8))
    return bytes(out)
  if kind == "byte":
    return data[:pos] + bytes([int(rng.integers(256))]) + data[pos + 1:]
  if kind == "truncate":
    return data[:pos]
  if kind == "extend":
    return data + (b"\0" if rng.random() < 0.3 else rng.bytes(int(rng.integers(1, 9))))
  if kind == "tail":
    return data[:pos] + rng.bytes(int(rng.integers(0, 2 * len(data))))
  if kind == "random":
    keep = int(rng.integers(0, 16))  # Often a valid magic, version, fingerprint.
    return data[:keep] + rng.bytes(int(rng.integers(0, 64)))
  if kind == "splice":
    return data[:pos] + other[int(rng.integers(len(other))):]
  return foreign


def reencodes(coder, x, data, lean):
  """Whether x [N, *shape] encodes to the stream `data` at its budget.

  (A single-datapoint stream is the same in batch and solid form.)
  """
  budget = stream.read_header(data, coder.fingerprint, lean).budget
  return coder.compress(x, budget, lean) == data


def worker(start, count, seed, model_dir):
  """Runs cases start..start+count-1; prints 'index kind outcome' per case."""
  coder, other_model = _coder(model_dir, 0), _coder(None, 1)
  x = datasets.load("digits").splits["test"][:8]
  originals = []  # (stream, data it holds, solid, lean)
  for budget in (2, 4, 8):
    for lean in (False, True):
      for i, data in enumerate(coder.compress_each(x, budget, lean)):
        originals.append((data, x[i:i + 1], False, lean))
      originals.append((coder.compress(x[:5], budget, lean), x[:5], True, lean))
  foreign = other_model.compress_each(x, 4) + [other_model.compress(x, 4)]
  foreign_lean = other_model.compress_each(x, 4, True) + [other_model.compress(x, 4, True)]
  for index in range(start, start + count):
    rng = np.random.default_rng([seed, index])
    data, truth, solid, lean = originals[int(rng.integers(len(originals)))]
    other = originals[int(rng.integers(len(originals)))][0]
    kind = KINDS[index % len(KINDS)]
    others = foreign_lean if lean else foreign
    mutated = mutate(rng, kind, data, other, others[int(rng.integers(len(others)))])
    try:
      decoded = (coder.decompress(mutated, lean) if solid
                 else coder.decompress_each([mutated], lean=lean))
      outcome = "exact" if np.array_equal(decoded, truth) else (
          "other valid" if reencodes(coder, decoded, mutated, lean) else "wrong data")
    except UserError as e:
      outcome = "clear error" if str(e) and "\n" not in str(e) else "crash"
    except Exception:  # pylint: disable=broad-except
      outcome = "crash"
    print(index, kind, OUTCOMES.index(outcome), flush=True)


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--cases", type=int, default=10000)
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--model", help="trained digits model directory")
  parser.add_argument("--per_worker", type=int, default=2500)
  parser.add_argument("--worker", type=int, nargs=2, help=argparse.SUPPRESS)
  args = parser.parse_args(argv)
  if args.worker:
    worker(*args.worker, args.seed, args.model)
    return 0
  counts = collections.Counter()
  by_kind = collections.defaultdict(collections.Counter)
  index = 0
  while index < args.cases:
    count = min(args.per_worker, args.cases - index)
    cmd = [sys.executable, os.path.abspath(__file__), f"--seed={args.seed}",
           "--worker", str(index), str(count)] + ([f"--model={args.model}"]
                                                   if args.model else [])
    proc = subprocess.run(cmd, capture_output=True, text=True)
    done = index
    for line in proc.stdout.splitlines():
      case, kind, outcome = line.split()
      counts[OUTCOMES[int(outcome)]] += 1
      by_kind[kind][OUTCOMES[int(outcome)]] += 1
      done = int(case) + 1
    if done < index + count:  # The worker died: its current case crashed.
      counts["crash"] += 1
      by_kind[KINDS[done % len(KINDS)]]["crash"] += 1
      print(f"worker died at case {done}: {proc.stderr[-2000:]}", file=sys.stderr)
      done += 1
    index = done
  print(f"{sum(counts.values())} fuzz cases")
  print(f"  {'mutation':<10}" + "".join(f"{o:>12}" for o in OUTCOMES))
  for kind in KINDS:
    print(f"  {kind:<10}" + "".join(f"{by_kind[kind][o]:>12}" for o in OUTCOMES))
  print(f"  {'total':<10}" + "".join(f"{counts[o]:>12}" for o in OUTCOMES))
  return 1 if counts["wrong data"] or counts["crash"] else 0


if __name__ == "__main__":
  sys.exit(main())
