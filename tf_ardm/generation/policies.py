"""Generation policies for a trained model: naive and DP-optimal (spec §4.2-4.3).

A policy is a non-decreasing int32 vector [k] of left boundaries
pi_0 = 0 <= pi_1 <= ... < D: step j generates the positions with
pi_j <= sigma < pi_{j+1} (pi_k = D) in one network call. A repeated entry is
a step that generates nothing; the DP can return one when an extra call
cannot lower the cost (e.g. flat losses), and every consumer (sampling, the
ELBO, the likelihood, the codec) treats it as such.

An Upscale model has one policy per stage, [S, k]; the DP runs on each
stage's D loss components (`optimal_stage_policies`). A policy table holds
the optimal policies of a set of budgets, padded with D to the largest
budget, so that a budget can be looked up in a graph: every budget when
D <= MAX_FULL_TABLE, else only `table_budgets(D)`; other budgets then get
the naive policy (`lookup_tf`, `is_tabulated`).
"""
import numpy as np
import tensorflow as tf

from tf_ardm.errors import UserError
from tf_ardm.generation import dynamic_programming as dp

# Above this many steps only these budgets (and D) are tabulated.
MAX_FULL_TABLE = 1024
SPARSE_BUDGETS = (1, 2, 4, 5, 8, 10, 16, 20, 25, 32, 50, 64, 100, 128, 200,
                  250, 256, 500, 512, 1000, 1024)


def naive_policy(num_steps, budget):
  """Evenly spaced policy round(linspace(0, D, budget + 1))[:-1], int32 [budget].

  Rounds half to even, in float64 (spec §4.2): D = 250, budget 20 ->
  [0, 12, 25, 38, 50, 62, ...]. In a graph num_steps and budget may be
  tensors; Python (or NumPy) ints are checked: UserError unless D >= 1 and
  1 <= budget <= D.
  """
  if _is_int(num_steps) and num_steps < 1:
    raise UserError(f"num_steps must be >= 1, got {num_steps}")
  if _is_int(num_steps) and _is_int(budget) and not 1 <= budget <= num_steps:
    raise UserError(f"budget must be in [1, {num_steps}] (the number of steps), "
                    f"got {budget}")
  edges = tf.linspace(tf.constant(0.0, tf.float64), tf.cast(num_steps, tf.float64),
                      budget + 1)
  return tf.cast(tf.round(edges), tf.int32)[:-1]


def _is_int(value):
  return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def table_budgets(num_steps):
  """The budgets tabulated for a model with D steps, int list."""
  if num_steps <= MAX_FULL_TABLE:
    return list(range(1, num_steps + 1))
  return sorted({b for b in SPARSE_BUDGETS if b < num_steps} | {num_steps})


def is_tabulated(num_steps, budget):
  """Whether a model with D steps holds the optimal policy for `budget`."""
  return budget in table_budgets(num_steps)


def optimal_stage_policies(loss_components, num_stages, budgets):
  """The DP-optimal policies of every stage for each budget (spec §4.3, §6.6).

  Args:
    loss_components: float [S * D], stage-major per-step losses, bits/dim.
    num_stages: S.
    budgets: ints in [1, D], calls per stage.

  Returns:
    (policies, costs): a list over budgets of int32 [S, budget] arrays (each
    stage's losses sorted descending before its DP) and float64
    [len(budgets)], the predicted negative ELBO summed over stages, bits/dim.
  """
  values = np.asarray(loss_components, np.float64)
  if not _is_int(num_stages) or num_stages < 1:
    raise UserError(f"num_stages must be an integer >= 1, got {num_stages!r}")
  if values.ndim != 1 or values.size % num_stages:
    raise UserError(f"loss components of shape {values.shape} do not split into "
                    f"{num_stages} stages (the length must be divisible by it)")
  per_stage = values.reshape(num_stages, -1)
  solved = [dp.optimal_policies(row, budgets) for row in per_stage]
  policies = [np.stack([stage[0][i] for stage in solved]) for i in range(len(budgets))]
  return policies, np.sum([stage[1] for stage in solved], axis=0)


def policy_table(loss_components, num_stages, budgets):
  """Optimal policies int32 [S, len(budgets), max(budgets)], padded with D."""
  num_steps = len(loss_components) // num_stages
  optimal, _ = optimal_stage_policies(loss_components, num_stages, budgets)
  table = np.full([num_stages, len(budgets), max(budgets)], num_steps, np.int32)
  for i, policy in enumerate(optimal):
    table[:, i, :policy.shape[1]] = policy
  return table


def lookup_tf(table, budgets, num_steps, budget):
  """The tabulated optimal policy for `budget`, else the naive one, int32 [budget].

  table: int32 [len(budgets), max(budgets)], one stage's rows of `policy_table`.
  """
  budget = tf.convert_to_tensor(budget, tf.int32)
  hit = tf.where(tf.equal(budgets, budget))[:, 0]
  return tf.cond(
      tf.size(hit) > 0,
      lambda: tf.gather(table, hit[0])[:budget],
      lambda: naive_policy(num_steps, budget))
