"""Policies as generated and scored: naive (spec §11 case 5), per stage and
tabulated, the policy ELBO weights (case 10), and the DP policies that the
servable and the evaluation really use (repeated entries; D > 1024)."""
import math
import types

import numpy as np
import pytest
import tensorflow as tf

from conftest import ConstantLogits, CountingLogits
from tf_ardm.config import ModelConfig
from tf_ardm.errors import UserError
from tf_ardm.evaluation import likelihoods
from tf_ardm.generation import dynamic_programming as dp
from tf_ardm.generation import masks
from tf_ardm.generation import policies
from tf_ardm.models.ardm import Denoiser
from tf_ardm.models.loss_tracker import LossTracker
from tf_ardm.serving import servable

SPEC_LOSSES = np.array([5.0, 4.0, 3.0, 2.85, 2.80])


class StepLossLogits(tf.keras.layers.Layer):
  """K = 2 logits whose one-step loss at t is exactly losses[t] for x = 0.

  With t known positions every position gets log p(0) = -losses[t] * D * ln 2
  nats, so `Denoiser.elbo_terms(zeros, sigma, t)['elbo_per_t'] = -losses[t]`
  (bits/dim) for every order: the network's true loss components are `losses`.
  """

  def __init__(self, losses, **kwargs):
    super().__init__(**kwargs)
    nats = np.asarray(losses, np.float64) * len(losses) * math.log(2.0)
    # log p(0) = -softplus(z) = -nats for logits [0, z].
    self.z = tf.constant(np.log(np.expm1(nats)), tf.float32)

  def call(self, x_in, t, mask, training=False):
    del mask
    z = tf.gather(self.z, t)
    logits = tf.stack([tf.zeros_like(z), z], -1)
    ones = tf.ones([tf.rank(x_in) - 1], tf.int32)
    logits = tf.reshape(logits, tf.concat([tf.shape(z), ones, [2]], 0))
    return tf.broadcast_to(logits, tf.concat([tf.shape(x_in), [2]], 0))


def text_config(d, num_classes=2):
  return ModelConfig("x", "text", [d], num_classes, "transformer", {})


def image_config(num_classes=5):
  return ModelConfig("x", "image", [2, 2, 1], num_classes, "unet", {})


def known_servable(config, network, loss_components):
  """A Servable of `network` whose policies come from `loss_components`.

  The components play the held-out estimates of a trained model, which the
  servable's policies use when present.
  """
  model = types.SimpleNamespace(
      config=config, ema=Denoiser(config, network),
      loss_tracker=LossTracker(config.total_steps, config.num_classes),
      heldout_loss_components=np.asarray(loss_components, np.float32))
  return servable.Servable(model)


# --- Spec case 5: naive policies. --------------------------------------------


def test_spec_case5_naive_policy():
  assert policies.naive_policy(250, 20).numpy().tolist() == [
      0, 12, 25, 38, 50, 62, 75, 88, 100, 112, 125, 138, 150, 162, 175, 188,
      200, 212, 225, 238]
  assert policies.naive_policy(10, 4).numpy().tolist() == [0, 2, 5, 8]
  assert policies.naive_policy(5, 2).numpy().tolist() == [0, 2]
  assert policies.naive_policy(7, 7).numpy().tolist() == list(range(7))
  assert policies.naive_policy(7, 1).numpy().tolist() == [0]
  assert policies.naive_policy(250, 20).numpy().dtype == np.int32


@pytest.mark.parametrize("d,budget", [(250, 20), (10, 4), (5, 2), (64, 64), (64, 1), (1100, 3)])
def test_naive_policy_rounds_half_to_even_in_graph_too(d, budget):
  """Spec §11.5: round(linspace(0, D, budget + 1))[:-1], NumPy's rounding."""
  expected = np.round(np.linspace(0, d, budget + 1))[:-1].astype(np.int32)
  np.testing.assert_array_equal(policies.naive_policy(d, budget), expected)
  in_graph = tf.function(policies.naive_policy)(tf.constant(d), tf.constant(budget))
  np.testing.assert_array_equal(in_graph, expected)


@pytest.mark.parametrize("d,budget,match", [
    (5, 0, r"budget must be in \[1, 5\]"),
    (5, 6, r"budget must be in \[1, 5\]"),
    (np.int64(5), np.int32(6), r"budget must be in \[1, 5\]"),
    (0, 1, "num_steps must be >= 1"),
])
def test_naive_policy_validation(d, budget, match):
  with pytest.raises(UserError, match=match):
    policies.naive_policy(d, budget)


# --- Per-stage DP and policy tables. ------------------------------------------


def test_optimal_stage_policies():
  rng = np.random.default_rng(4)
  blocks = [rng.random(12) for _ in range(3)]
  optimal, totals = policies.optimal_stage_policies(np.concatenate(blocks), 3, [4, 2])
  assert [p.shape for p in optimal] == [(3, 4), (3, 2)]
  assert all(p.dtype == np.int32 for p in optimal)
  for i, budget in enumerate([4, 2]):
    expected_total = 0.0
    for stage, block in enumerate(blocks):
      (policy,), (cost,) = dp.optimal_policies(block, [budget], sort=True)
      np.testing.assert_array_equal(optimal[i][stage], policy)
      expected_total += cost
    assert totals[i] == pytest.approx(expected_total)
  with pytest.raises(UserError, match="divisible"):
    policies.optimal_stage_policies(np.ones(10), 3, [2])
  with pytest.raises(UserError, match="budget"):
    policies.optimal_stage_policies(np.ones(12), 3, [5])
  with pytest.raises(UserError, match="num_stages"):
    policies.optimal_stage_policies(np.ones(12), 0, [2])


def test_table_budgets():
  assert policies.table_budgets(20) == list(range(1, 21))
  sparse = policies.table_budgets(1100)
  assert sparse[:4] == [1, 2, 4, 5] and sparse[-2:] == [1024, 1100]
  assert policies.is_tabulated(1024, 3) and policies.is_tabulated(1100, 1100)
  assert not policies.is_tabulated(1100, 3)


def test_policy_table_lookup_matches_dp_and_falls_back_to_naive():
  rng = np.random.default_rng(0)
  losses = np.concatenate([rng.random(20), rng.random(20) * 3])
  budgets = [1, 2, 3, 7, 20]
  table = policies.policy_table(losses, 2, budgets)
  assert table.shape == (2, 5, 20) and table.dtype == np.int32
  optimal, _ = policies.optimal_stage_policies(losses, 2, budgets)
  for stage in range(2):
    for i, budget in enumerate(budgets):
      np.testing.assert_array_equal(table[stage, i, budget:], 20)  # padding with D
      got = policies.lookup_tf(tf.constant(table[stage]), tf.constant(budgets), 20, budget)
      np.testing.assert_array_equal(got, optimal[i][stage])
    # A budget that is not in the table gets the naive policy.
    got = policies.lookup_tf(tf.constant(table[stage]), tf.constant(budgets), 20, 5)
    np.testing.assert_array_equal(got, policies.naive_policy(20, 5))


# --- Spec case 10: the ELBO weights of Denoiser.elbo_with_policy. -------------


def policy_elbo_per_index(denoiser, policy):
  """elbo_with_policy of x = 0 at every index j of `policy`, float [k]."""
  k, d = len(policy), denoiser.num_steps
  sigma = masks.sample_sigma(k, d, seed=[0, 1])
  x = tf.zeros([k, d], tf.int32)
  return denoiser.elbo_with_policy(x, sigma, tf.constant(policy, tf.int32),
                                   tf.range(k)).numpy()


def test_spec_case10_policy_elbo_weights():
  denoiser = Denoiser(text_config(5), StepLossLogits(SPEC_LOSSES))
  values = policy_elbo_per_index(denoiser, [0, 2])
  # Index j estimates -weight_j * l[pi_j]: weights (2 - 0) * 2 = 4, (5 - 2) * 2 = 6.
  np.testing.assert_allclose(values / -SPEC_LOSSES[[0, 2]], [4.0, 6.0], rtol=1e-5)
  # For a uniform index, E[weight * l[pi_j]] = 2 l_0 + 3 l_2 = 19, the DP cost.
  assert values.mean() == pytest.approx(-19.0, rel=1e-5)
  assert values.mean() == pytest.approx(-dp.policy_cost(SPEC_LOSSES, [0, 2]), rel=1e-5)
  for budget in range(1, 6):
    (policy,), (cost,) = dp.optimal_policies(SPEC_LOSSES, [budget])
    values = policy_elbo_per_index(denoiser, policy)
    assert values.mean() == pytest.approx(-cost, rel=1e-5), budget
    np.testing.assert_allclose(
        values / -SPEC_LOSSES[policy], np.diff(np.append(policy, 5)) * budget, rtol=1e-5)
  # A repeated entry is a step that generates nothing: weight 0.
  values = policy_elbo_per_index(denoiser, [0, 2, 2])
  np.testing.assert_allclose(values / -SPEC_LOSSES[[0, 2, 2]], [6.0, 0.0, 9.0], rtol=1e-5)
  assert values.mean() == pytest.approx(-19.0, rel=1e-5)


# --- Policy bug 1: DP policies with repeated entries in the servable. ---------

CONSTANT_PROBS = np.array([0.4, 0.3, 0.1, 0.1, 0.1])


@pytest.mark.parametrize("components,expected", [
    ([1.0, 0.0, 0.0, 0.0], [0, 0, 1]),  # budget 3 cannot beat budget 2
    ([0.5] * 4, [0, 0, 0]),              # flat losses (spec §11.4)
])
def test_servable_elbo_takes_dp_policies_with_repeated_entries(components, expected):
  scorer = known_servable(image_config(), ConstantLogits(np.log(CONSTANT_PROBS)), components)
  policy = scorer.policy(budget=tf.constant(3)).numpy()
  (dp_policy,), _ = dp.optimal_policies(components, [3])
  assert policy.tolist() == dp_policy.tolist() == expected
  # The network gives every position log2 p(0) = log2 0.4 whatever is known:
  # flat loss components of bits / D, so every policy's DP cost is `bits`,
  # the budget-D value.
  bits = -math.log2(CONSTANT_PROBS[0])
  assert dp.policy_cost([bits / 4] * 4, policy) == pytest.approx(bits)
  x = tf.zeros([500, 2, 2, 1], tf.int32)
  exact = scorer.elbo(x=x, policy=tf.range(4), seed=tf.constant(0))["elbo_bpd"].numpy()
  np.testing.assert_allclose(exact, -bits, rtol=1e-6)
  values = np.concatenate([
      scorer.elbo(x=x, policy=tf.constant(policy), seed=tf.constant(seed))["elbo_bpd"].numpy()
      for seed in range(8)])
  # Index j estimates -bits * width_j * k / D; the repeated entries (width 0) give 0.
  possible = -bits * np.diff(np.append(policy, 4)) * 3 / 4
  nearest = np.abs(values[:, None] - possible[None, :]).min(1)
  np.testing.assert_allclose(nearest, 0.0, atol=1e-5)
  assert np.mean(values == 0.0) == pytest.approx(np.mean(possible == 0.0), abs=0.03)
  se = values.std(ddof=1) / math.sqrt(len(values))
  assert abs(values.mean() + bits) < 4 * se


def test_servable_samples_and_scores_with_a_repeated_entry():
  counting = known_servable(image_config(7), CountingLogits(7), [1.0, 0.0, 0.0, 0.0])
  assert counting.policy(budget=tf.constant(3)).numpy().tolist() == [0, 0, 1]
  samples = counting.sample(num=tf.constant(6), budget=tf.constant(3),
                            seed=tf.constant(0))["samples"].numpy()
  # Step [0, 0) generates nothing, [0, 1) one position with 0 known, [1, 4)
  # the rest with 1 known (the naive [0, 1, 3] would give 0, 1, 1, 3).
  np.testing.assert_array_equal(np.sort(samples.reshape(6, 4), 1), [[0, 1, 1, 1]] * 6)
  scorer = known_servable(image_config(), ConstantLogits(np.log(CONSTANT_PROBS)),
                          [1.0, 0.0, 0.0, 0.0])
  x = np.random.default_rng(0).integers(0, 5, [3, 2, 2, 1]).astype(np.int32)
  exact = -np.log2(CONSTANT_PROBS[x]).reshape(3, 4).mean(1)
  for budget in (3, 4):
    got = scorer.log_prob(x=tf.constant(x), budget=tf.constant(budget))["bits_per_dim"]
    np.testing.assert_allclose(got, exact, rtol=1e-6)


# --- Policy bug 2: the budget table's DP policies for D > 1024. ---------------


def test_budget_table_uses_dp_policies_for_budgets_the_servable_does_not_tabulate():
  d, budget = 1100, 3
  components = 0.006 / (np.arange(d) + 1)  # bits/dim; the network's true losses
  config = text_config(d)
  scorer = known_servable(config, StepLossLogits(components), components)
  assert not policies.is_tabulated(d, budget)
  naive = policies.naive_policy(d, budget).numpy()
  # The servable itself falls back to the naive policy at this budget ...
  np.testing.assert_array_equal(scorer.policy(budget=tf.constant(budget)), naive)
  (dp_policy,), (cost,) = dp.optimal_policies(components, [budget])
  assert dp_policy.tolist() != naive.tolist()
  x = np.zeros([100, d], np.int32)
  (row,) = likelihoods.budget_table(scorer, config, x, [budget], passes=4, batch_size=100)
  # ... the table's DP row is the DP policy, scored as such.
  assert row["policy"] == dp_policy.tolist()
  assert row["dp"] == likelihoods.negative_elbo(scorer, x, dp_policy, 4, 100)[0]
  assert row["naive"] == likelihoods.negative_elbo(scorer, x, naive, 4, 100)[0]
  assert row["predicted"] == pytest.approx(cost, rel=1e-6)
  assert abs(row["dp"] - cost) < 4 * row["dp_se"] + 1e-6
  assert abs(row["naive"] - dp.policy_cost(components, naive)) < 4 * row["naive_se"]
  assert row["naive"] - row["dp"] > 10 * row["diff_se"]
