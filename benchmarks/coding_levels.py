"""How to quantize P(bit = 0) for TFC's 16-bit range coder: a measurement.

Collects the binary decisions that `tf_ardm.coding` makes for a model's test
data (safe probabilities at each symbol's policy step, MSB-first binary
tree) and reports, for several level sets, the ideal code length of the
quantized decisions relative to the unquantized one:

  uniform-4096     4096 levels (i + 1/2) / 4096, i.e. clamped at 2^-13
  logit-4096/2^-16 4096 levels uniform in logit between 2^-16 and 1 - 2^-16,
                   rounded to multiples of 2^-16
  logit-4096/2^-12 the same between 2^-12 and 1 - 2^-12
  all-16-bit       every c / 2^16, c = 1 .. 2^16 - 1 (what tf_ardm.coding uses)

Decisions whose right subtree is empty are certain and free in every set.

Usage: python benchmarks/coding_levels.py --model=DIR [--model=DIR ...]
  [--budget=K] [--limit=N]   (DIR: a trained model directory)
"""
import argparse
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [HERE, os.path.dirname(HERE)]

from compression import step_groups  # noqa: E402
from tf_ardm.models import checkpoints  # noqa: E402
from tf_ardm.coding import codec as codec_lib  # noqa: E402
from tf_ardm.coding import range_coder as coding  # noqa: E402
from tf_ardm.data import datasets  # noqa: E402

SCALE = 2.0**16


def _logit(p):
  return np.log(p) - np.log1p(-p)


def level_sets():
  """name -> (sorted levels in (0, 1), 'nearest' or 'logit-nearest')."""
  uniform = (np.arange(4096) + 0.5) / 4096
  sets = {"uniform-4096": (uniform, "nearest")}
  for name, low in (("logit-4096/2^-16", 2.0**-16), ("logit-4096/2^-12", 2.0**-12)):
    grid = np.linspace(_logit(low), -_logit(low), 4096)
    levels = np.clip(np.round(SCALE / (1 + np.exp(-grid))), 1, SCALE - 1) / SCALE
    sets[name] = (np.unique(levels), "logit-nearest")
  sets["all-16-bit"] = (np.arange(1, SCALE) / SCALE, "nearest")
  return sets


def quantize(p, levels, mode):
  """The level nearest to each p (in probability or logit), float64."""
  key = _logit(np.clip(p, 1e-300, 1 - 1e-16)) if mode == "logit-nearest" else p
  grid = _logit(levels) if mode == "logit-nearest" else levels
  hi = np.clip(np.searchsorted(grid, key), 1, len(grid) - 1)
  lo = hi - 1
  return levels[np.where(np.abs(grid[hi] - key) < np.abs(key - grid[lo]), hi, lo)]


def decisions(probs, symbols):
  """(p0, bit) of every uncertain decision: probs [M, K] float64, symbols [M]."""
  k = probs.shape[1]
  nb = coding.num_bits(k)
  mass = np.concatenate([probs, np.zeros([len(probs), 2**nb - k])], 1)
  cum = np.concatenate([np.zeros([len(mass), 1]), np.cumsum(mass, 1)], 1)
  rows = np.arange(len(mass))
  p0s, bits = [], []
  for depth in range(nb):
    shift = nb - depth
    lo = (symbols >> shift) << shift
    half = 1 << (shift - 1)
    left = cum[rows, np.minimum(lo + half, 2**nb)] - cum[rows, lo]
    total = cum[rows, np.minimum(lo + 2 * half, 2**nb)] - cum[rows, lo]
    uncertain = lo + half < k
    p0s.append((left / np.maximum(total, 1e-300))[uncertain])
    bits.append(((symbols >> (shift - 1)) & 1)[uncertain])
  return np.concatenate(p0s), np.concatenate(bits)


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--model", action="append", required=True,
                      help="trained model directory (repeatable)")
  parser.add_argument("--budget", type=int, default=None, help="default: D")
  parser.add_argument("--limit", type=int, default=200, help="test datapoints")
  args = parser.parse_args(argv)
  sets = level_sets()
  rng = np.random.default_rng(0)
  p0 = 1 / (1 + np.exp(-rng.normal(0, 6, 10**6)))
  report("synthetic: 10^6 decisions, P(bit=0) = sigmoid(N(0, 6^2))", sets,
         np.clip(p0, 2e-5, 1 - 2e-5), (rng.random(p0.size) > p0).astype(int), p0.size)
  for path in args.model:
    model = checkpoints.restore(path)
    config = model.config
    data = datasets.load(config.dataset, seq_len=config.shape[0])
    x = data.splits["test"][:args.limit]
    codec = codec_lib.Codec(model)
    budget = args.budget or config.num_steps
    groups = step_groups(codec, x, budget)
    probs = np.concatenate([p.numpy().reshape(-1, config.num_classes) for _, p in groups]
                           ).astype(np.float64)
    symbols = np.concatenate([s.numpy().reshape(-1) for s, _ in groups])
    p0, bit = decisions(probs, symbols)
    report(f"{config.dataset}: {len(x)} test datapoints, budget {budget}", sets, p0, bit,
           symbols.size)


def report(title, sets, p0, bit, dims):
  """Prints each level set's overhead on the decisions (p0, bit) over `dims`."""
  ideal = -np.sum(np.log2(np.where(bit == 0, p0, 1 - p0)))
  print(f"\n{title}: {len(p0)} uncertain decisions, ideal {ideal / dims:.4f} bits/dim")
  print(f"  {'level set':<18} {'levels':>6} {'overhead bits/dim':>18} {'relative':>9}")
  for name, (levels, mode) in sets.items():
    q = quantize(p0, levels, mode)
    bits = -np.sum(np.log2(np.where(bit == 0, q, 1 - q)))
    print(f"  {name:<18} {len(levels):>6} {(bits - ideal) / dims:>18.2e} "
          f"{bits / ideal - 1:>9.2e}")


if __name__ == "__main__":
  main()
