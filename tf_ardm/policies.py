"""Generation policies for a trained model: naive and DP-optimal (spec §4.2-4.3).

A policy table holds the optimal policy for each budget in `budgets`, padded
with D to the largest budget, so that a budget can be looked up in a graph.
"""
import numpy as np
import tensorflow as tf

from tf_ardm import dynamic_programming as dp

# Above this many steps only these budgets (and D) are tabulated.
MAX_FULL_TABLE = 1024
SPARSE_BUDGETS = (1, 2, 4, 5, 8, 10, 16, 20, 25, 32, 50, 64, 100, 128, 200,
                  250, 256, 500, 512, 1000, 1024)


def table_budgets(num_steps):
  """The budgets tabulated for a model with D steps, int list."""
  if num_steps <= MAX_FULL_TABLE:
    return list(range(1, num_steps + 1))
  return sorted({b for b in SPARSE_BUDGETS if b < num_steps} | {num_steps})


def policy_table(loss_components, budgets):
  """Optimal policies int32 [len(budgets), max(budgets)], padded with D."""
  num_steps = len(loss_components)
  policies, _ = dp.optimal_policies(np.asarray(loss_components, np.float64), budgets)
  table = np.full([len(budgets), max(budgets)], num_steps, np.int32)
  for row, policy in zip(table, policies):
    row[:len(policy)] = policy
  return table


def naive_policy_tf(num_steps, budget):
  """The naive policy round(linspace(0, D, budget+1))[:-1] (half-to-even)."""
  edges = tf.linspace(tf.constant(0.0, tf.float64), tf.cast(num_steps, tf.float64),
                      budget + 1)
  return tf.cast(tf.round(edges), tf.int32)[:-1]


def lookup_tf(table, budgets, num_steps, budget):
  """The tabulated optimal policy for `budget`, else the naive one, int32 [budget]."""
  budget = tf.convert_to_tensor(budget, tf.int32)
  hit = tf.where(tf.equal(budgets, budget))[:, 0]
  return tf.cond(
      tf.size(hit) > 0,
      lambda: tf.gather(table, hit[0])[:budget],
      lambda: naive_policy_tf(num_steps, budget))
