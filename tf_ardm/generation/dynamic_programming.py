"""Budget allocation for parallel generation by dynamic programming (spec §4.3).

Pure NumPy, float64 throughout. Two public functions: `optimal_policies`
(the exact optimal policy and its cost for any set of budgets) and
`policy_cost` (the cost of a given policy). Naive policies, the per-stage
policies of Upscale models and the policy tables of exports are in
`tf_ardm.generation.policies`.

Units and shapes:
  losses   float [N]: per-step loss components in bits/dim (the loss
           tracker's output, one entry per 0-based step t = number of
           known variables); their sum is the sequential (N-call) bpd.
  policy   int32 [b]: the left boundaries pi_0 = 0 <= pi_1 <= ... of the b
           parallel steps; extended with N (`pi_ext = pi ++ [N]`) when used.
  cost     float, bits/dim: the expected negative ELBO of sampling with the
           policy, sum_j (pi_ext[j+1] - pi_ext[j]) * losses[pi_ext[j]].

Recurrence (cost matrix C and argmin matrix A, rows k = 0..max_budget,
columns u = 0..N):
  C[0, 0] = 0, C[0, u > 0] = inf, A[0, :] = -1,
  C[k, u] = min over ALL s in [0, N] of C[k-1, s] + M[s, u],
  M[s, u] = (u - s) * losses[s] if u > s else 0,
  A[k, u] = the first (smallest) minimising s.
C[k, u] is the best cost of generating the first u variables in at most k
network calls. The policy for budget b is found by backtracking u <- N,
u <- A[k, u] for k = b..1 (then reversed), and its cost is C[b, N].

Two exact solvers of one row C[k, :] from C[k-1, :]:
  * monotone (production path, for non-increasing losses, e.g. after the
    descending sort the reference applies): restricted to s <= u the matrix
    C[k-1, s] + (u - s) * losses[s] is Monge when the losses are non-increasing
    ((u2 - u1) * (l[s2] - l[s1]) <= 0), so the first minimiser is
    non-decreasing in u. Divide and conquer over u, vectorised across all
    sub-problems of one recursion level: about log2(N) NumPy passes of O(N)
    work each per row. Candidates s > u (only ever useful with negative
    losses) are folded in exactly with a suffix minimum.
  * general (any order): every candidate evaluated, O(N^2) per row, chunked
    over u so memory stays O(N * chunk).
Both evaluate candidates with the same float64 expression as a brute-force
implementation. The general solver reproduces brute force exactly (costs and
first-minimiser argmins). The monotone solver only searches the range of s
that monotonicity allows and takes the first float minimiser there; this
equals brute force whenever float rounding preserves the order of the
candidates: always when the arithmetic is exact (e.g. small integer-valued
losses) and in practice for generic real data (tested against brute force).
It can differ when several candidates tie in exact arithmetic but not after
rounding, e.g. a run of equal non-dyadic losses such as 0.7, where brute
force's argmin is decided by rounding noise; the two policies' costs then
agree to ~1e-15 relative. The guarantee for the monotone solver is
therefore: policy costs equal brute force to 1e-9 relative (far tighter in
practice), and the policies are valid (length b, start at 0, non-decreasing
for non-negative losses).

Memory: O(N * max_budget) for the argmins of the rows 1..max(budgets) (needed
for backtracking any requested budget); only O(N) floats for the costs.
"""
import operator

import numpy as np

from tf_ardm.errors import UserError

__all__ = ["policy_cost", "optimal_policies"]

_METHODS = ("auto", "monotone", "general")
# Elements of one candidate block in the general solver (8 bytes each).
_GENERAL_BLOCK_ELEMENTS = 1 << 21


# ---------------------------------------------------------------------------
# Validation helpers.


def _as_int(value, name):
  if isinstance(value, (bool, np.bool_)):
    raise UserError(f"{name} must be an integer, got {value!r}")
  try:
    return operator.index(value)
  except TypeError:
    raise UserError(f"{name} must be an integer, got {value!r}") from None


def _as_losses(losses):
  """float64 [N] copy-free view of `losses`, validated."""
  try:
    values = np.asarray(losses, dtype=np.float64)
  except (TypeError, ValueError) as e:
    raise UserError(f"losses must be a 1-D array of numbers: {e}") from None
  if values.ndim != 1:
    raise UserError(
        f"losses must be a 1-D vector, got shape {values.shape}")
  if values.size == 0:
    raise UserError("losses must not be empty")
  bad = ~np.isfinite(values)
  if bad.any():
    first = int(np.flatnonzero(bad)[0])
    raise UserError(
        f"losses must be finite; entry {first} is {values[first]!r} "
        f"({int(bad.sum())} non-finite entries)")
  return values


def _as_budget(budget, num_steps, name="budget"):
  budget = _as_int(budget, name)
  if not 1 <= budget <= num_steps:
    raise UserError(
        f"{name} must be in [1, {num_steps}] (the number of steps), "
        f"got {budget}")
  return budget


def _as_budgets(budgets, num_steps):
  if isinstance(budgets, (int, np.integer)) and not isinstance(
      budgets, (bool, np.bool_)):
    budgets = [budgets]
  try:
    budgets = list(budgets)
  except TypeError:
    raise UserError(
        f"budgets must be an iterable of integers, got {budgets!r}") from None
  if not budgets:
    raise UserError("budgets must contain at least one budget")
  return [_as_budget(b, num_steps, "every budget") for b in budgets]


def _as_policy(policy, num_steps):
  values = np.asarray(policy)
  if values.ndim != 1 or values.size == 0:
    raise UserError(
        f"policy must be a non-empty 1-D integer vector, got shape "
        f"{values.shape}")
  if not np.issubdtype(values.dtype, np.integer):
    if not (np.issubdtype(values.dtype, np.floating)
            and np.all(values == np.round(values))):
      raise UserError(f"policy entries must be integers, got {policy!r}")
  values = values.astype(np.int64)
  if values.min() < 0 or values.max() > num_steps:
    raise UserError(
        f"policy entries must be in [0, {num_steps}], got min "
        f"{values.min()} and max {values.max()}")
  return values


def _prepare(losses, sort):
  values = _as_losses(losses)
  if sort:
    values = np.sort(values)[::-1]
  return np.ascontiguousarray(values)


def _is_non_increasing(values):
  return values.size < 2 or bool(np.all(values[1:] <= values[:-1]))


def _choose_method(values, method):
  if method not in _METHODS:
    raise UserError(f"method must be one of {_METHODS}, got {method!r}")
  monotone = _is_non_increasing(values)
  if method == "auto":
    return "monotone" if monotone else "general"
  if method == "monotone" and not monotone:
    raise UserError(
        "method='monotone' needs non-increasing losses; sort them "
        "(sort=True) or use method='general'")
  return method


# ---------------------------------------------------------------------------
# Cost of a policy.


def policy_cost(losses, policy):
  """Expected cost (bits/dim) of sampling with `policy` under `losses`.

  sum_j M[pi_ext[j], pi_ext[j+1]] with pi_ext = policy ++ [N], i.e. the
  reference's `compute_cost_with_policy`. Accumulated left to right like the
  DP, so for a DP policy it reproduces C[b, N] (bit-for-bit on the same,
  already sorted, loss vector).

  Args:
    losses: float [N], per-step losses (not re-sorted here).
    policy: int [b], entries in [0, N].
  Returns:
    A Python float.
  """
  values = _as_losses(losses)
  n = values.size
  pol = _as_policy(policy, n)
  ext = np.append(pol, n)
  widths = ext[1:] - ext[:-1]
  padded = np.append(values, 0.0)
  terms = np.where(widths > 0, widths * padded[ext[:-1]], 0.0)
  return float(np.cumsum(np.concatenate([[0.0], terms]))[-1])


# ---------------------------------------------------------------------------
# Row solvers.


def _build_schedule(n):
  """Divide-and-conquer schedule over u = 0..n, grouped by recursion level.

  Returns a list of levels (mids, parent, is_left): int64 [S_l] midpoints of
  the level's sub-problems, and for levels > 0 the index of each sub-problem's
  parent in the previous level and whether it is that parent's left child.
  Every u appears exactly once as a midpoint.
  """
  levels = []
  lo = np.zeros(1, np.int64)
  hi = np.full(1, n, np.int64)
  parent = is_left = None
  while lo.size:
    mid = (lo + hi) // 2
    levels.append((mid, parent, is_left))
    has_left = lo < mid
    has_right = mid < hi
    index = np.arange(mid.size)
    parent = np.concatenate([index[has_left], index[has_right]])
    is_left = np.concatenate([np.ones(int(has_left.sum()), bool),
                              np.zeros(int(has_right.sum()), bool)])
    lo, hi = (np.concatenate([lo[has_left], mid[has_right] + 1]),
              np.concatenate([mid[has_left] - 1, hi[has_right]]))
  return levels


def _fold_suffix(prev, cost, arg):
  """Folds candidates s > u (value C[k-1, s] + 0) into (cost, arg) in place.

  They lose ties to any s <= u (larger index), so they win only when strictly
  smaller; among them the first minimiser is taken. With non-negative losses
  C[k-1, :] is non-decreasing and this never changes anything.
  """
  n1 = prev.size
  suffix_min = np.minimum.accumulate(prev[::-1])[::-1]  # min(prev[s:])
  candidate_cost = np.append(suffix_min[1:], np.inf)    # min(prev[u+1:])
  better = candidate_cost < cost
  if not better.any():
    return
  record = np.where(prev == suffix_min, np.arange(n1), n1)
  next_record = np.minimum.accumulate(record[::-1])[::-1]
  candidate_arg = np.append(next_record[1:], -1)  # first argmin of prev[u+1:]
  cost[better] = candidate_cost[better]
  arg[better] = candidate_arg[better]


def _row_monotone(prev, padded, schedule, cost, arg):
  """One DP row for non-increasing losses (monotone first argmin in u).

  Args:
    prev: float64 [N+1], C[k-1, :].
    padded: float64 [N+1], losses ++ [0].
    schedule: from `_build_schedule(N)`.
    cost, arg: outputs, float64 [N+1] and int [N+1], C[k, :] and A[k, :].
  """
  n = prev.size - 1
  opt_lo = np.zeros(1, np.int64)
  opt_hi = np.full(1, n, np.int64)
  best = None
  for mid, parent, is_left in schedule:
    if parent is not None:
      parent_best = best[parent]
      opt_lo, opt_hi = (np.where(is_left, opt_lo[parent], parent_best),
                        np.where(is_left, parent_best, opt_hi[parent]))
    top = np.minimum(opt_hi, mid)
    lengths = top - opt_lo + 1
    ends = np.cumsum(lengths)
    starts = ends - lengths
    s = np.arange(ends[-1]) + np.repeat(opt_lo - starts, lengths)
    values = prev[s] + (np.repeat(mid, lengths) - s) * padded[s]
    minima = np.minimum.reduceat(values, starts)
    first = np.where(values == np.repeat(minima, lengths), s, n + 1)
    best = np.minimum.reduceat(first, starts)
    cost[mid] = minima
    arg[mid] = best
  _fold_suffix(prev, cost, arg)


def _row_general(prev, padded, cost, arg):
  """One DP row for arbitrary losses: all candidates, chunked over u."""
  n1 = prev.size
  chunk = max(1, _GENERAL_BLOCK_ELEMENTS // n1)
  for u0 in range(0, n1, chunk):
    u1 = min(n1, u0 + chunk)
    # Candidates s <= u1 - 1 (M = 0 where s >= u) ...
    widths = np.maximum(
        np.arange(u0, u1)[None, :] - np.arange(u1)[:, None], 0)
    values = prev[:u1, None] + widths * padded[:u1, None]
    best = np.argmin(values, axis=0)
    cost[u0:u1] = values[best, np.arange(u1 - u0)]
    arg[u0:u1] = best
  # ... and s >= u1 of each chunk, where M = 0.
  _fold_suffix(prev, cost, arg)


def _solve(values, max_budget, method):
  """Runs rows 1..max_budget.

  Returns:
    argmins: int32 [max_budget+1, N+1], A[k, :] (row 0 is -1).
    final_costs: float64 [max_budget+1], C[k, N].
  """
  n = values.size
  padded = np.append(values, 0.0)
  argmins = np.empty((max_budget + 1, n + 1), np.int32)
  argmins[0] = -1
  final_costs = np.empty(max_budget + 1)
  prev = np.full(n + 1, np.inf)
  prev[0] = 0.0
  final_costs[0] = prev[n]
  schedule = _build_schedule(n) if method == "monotone" else None
  for k in range(1, max_budget + 1):
    cur = np.empty(n + 1)
    arg = np.empty(n + 1, np.int64)
    if method == "monotone":
      _row_monotone(prev, padded, schedule, cur, arg)
    else:
      _row_general(prev, padded, cur, arg)
    argmins[k] = arg
    final_costs[k] = cur[n]
    if k >= 2 and np.array_equal(cur, prev):
      # Row k equals row k-1, so every later row (and its argmins) is the
      # same as this one: the extra calls cannot help any more.
      argmins[k + 1:] = arg
      final_costs[k + 1:] = cur[n]
      break
    prev = cur
  return argmins, final_costs


def _backtrack(argmins, budgets):
  """Backtracks every budget at once.

  Returns int32 [len(budgets), max(budgets)]; row i holds the policy for
  budgets[i] in its first budgets[i] entries (zeros after).
  """
  n = argmins.shape[1] - 1
  budgets = np.asarray(budgets, np.int64)
  max_budget = int(budgets.max())
  out = np.zeros((budgets.size, max_budget), np.int32)
  u = np.full(budgets.size, n, np.int64)
  rows = np.arange(budgets.size)
  for j in range(max_budget):
    active = budgets > j
    if not active.all():
      rows, u, budgets = rows[active], u[active], budgets[active]
    u = argmins[budgets - j, u].astype(np.int64)
    out[rows, budgets - 1 - j] = u
  return out


# ---------------------------------------------------------------------------
# Public DP entry points.


def optimal_policies(losses, budgets, sort=True, method="auto"):
  """Exact optimal policies for every budget (spec §4.3).

  Args:
    losses: float [N] per-step losses in bits/dim (finite).
    budgets: iterable of ints in [1, N] (or a single int); any order,
      duplicates allowed. Only rows up to max(budgets) are computed.
    sort: sort the losses descending before the DP (reference behaviour);
      with sort=False the given order is used (policies may then repeat
      entries, e.g. [3, 5, 1, 2, 4], budget 3 -> [0, 0, 2]).
    method: 'auto', 'monotone' (needs non-increasing losses after the
      optional sort) or 'general'. See the module docstring.
  Returns:
    (policies, costs): a list of int32 [b] arrays, in the order of
    `budgets`, each starting with 0 (non-decreasing for non-negative
    losses); float64 [len(budgets)] costs C[b, N] in bits/dim.
  """
  values = _prepare(losses, sort)
  budgets = _as_budgets(budgets, values.size)
  method = _choose_method(values, method)
  max_budget = max(budgets)
  argmins, final_costs = _solve(values, max_budget, method)
  table = _backtrack(argmins, budgets)
  policies = [table[i, :b].copy() for i, b in enumerate(budgets)]
  return policies, final_costs[np.asarray(budgets)].astype(np.float64)
