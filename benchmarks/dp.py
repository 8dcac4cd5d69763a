"""Timing of the budget-allocation DP (spec §4.3).

Targets (2-core CPU): N = 3072 with every budget 1..1000 in <= 10 s, and
N = 16000 with budget 100 in <= 30 s. Also times the exact O(N^2)-per-row
general solver on a smaller case and checks that it agrees with the fast
(monotone) solver there.

Usage: python benchmarks/dp.py [--repeats R] [--seed S]
Exit status 1 when a case misses its target or the solvers disagree.
"""
import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tf_ardm.generation import dynamic_programming as dp  # noqa: E402


def _losses(shape, n, rng):
  """Non-increasing per-step losses (bits/dim), float64 [n]."""
  if shape == "sorted-uniform":
    return np.sort(rng.random(n) * 8.0 / n)[::-1].copy()
  if shape == "harmonic":
    return 1.0 / (np.arange(n) + 1.0)
  raise ValueError(shape)


def _time(fn, repeats):
  best, result = np.inf, None
  for _ in range(repeats):
    start = time.perf_counter()
    result = fn()
    best = min(best, time.perf_counter() - start)
  return best, result


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--repeats", type=int, default=1,
                      help="runs per case; the best time is reported")
  parser.add_argument("--seed", type=int, default=0)
  args = parser.parse_args(argv)
  rng = np.random.default_rng(args.seed)

  rows = []  # (case, N, budgets, seconds, target or None, ok)
  for n, budgets, label, target in (
      (3072, range(1, 1001), "1..1000", 10.0),
      (16000, [100], "100", 30.0)):
    for shape in ("sorted-uniform", "harmonic"):
      losses = _losses(shape, n, rng)
      seconds, (_, costs) = _time(
          lambda: dp.optimal_policies(losses, budgets), args.repeats)
      ok = seconds <= target and bool(np.all(np.isfinite(costs)))
      rows.append((f"fast / {shape}", n, label, seconds, target, ok))

  # Baseline: the exact general solver (all candidates, O(N^2) per row)
  # against the fast solver on the same non-increasing losses.
  n, budgets, label = 1024, range(1, 201), "1..200"
  losses = _losses("sorted-uniform", n, rng)
  t_general, (p_general, c_general) = _time(
      lambda: dp.optimal_policies(losses, budgets, method="general"),
      args.repeats)
  t_fast, (p_fast, c_fast) = _time(
      lambda: dp.optimal_policies(losses, budgets, method="monotone"),
      args.repeats)
  rel = float(np.max(np.abs(c_fast - c_general) / np.abs(c_general)))
  same_policies = sum(np.array_equal(a, b) for a, b in zip(p_fast, p_general))
  agree = rel <= 1e-9
  rows.append(("general O(N^2)/row / sorted-uniform", n, label, t_general,
               None, agree))
  rows.append(("fast / sorted-uniform", n, label, t_fast, None, agree))

  header = ("case", "N", "budgets", "seconds", "target s", "result")
  table = [header] + [
      (case, str(n), label, f"{seconds:.3f}",
       "-" if target is None else f"{target:.0f}", "pass" if ok else "FAIL")
      for case, n, label, seconds, target, ok in rows]
  widths = [max(len(row[i]) for row in table) for i in range(len(header))]
  for i, row in enumerate(table):
    print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)))
    if i == 0:
      print("  ".join("-" * w for w in widths))
  print(f"\nN={n}, budgets {label}: fast vs general max relative cost "
        f"difference {rel:.2e}; identical policies {same_policies}/"
        f"{len(p_fast)}; speed-up {t_general / t_fast:.1f}x")
  return 0 if all(row[-1] for row in rows) else 1


if __name__ == "__main__":
  sys.exit(main())
