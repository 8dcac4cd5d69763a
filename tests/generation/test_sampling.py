"""Sampling with policies, infilling, and the servable's signature checks.

Policies themselves (naive, DP per stage, tables) are tested in test_policies.py.
"""
import numpy as np
import pytest
import tensorflow as tf

from conftest import ConstantLogits, CountingLogits, tiny_config
from tf_ardm.generation import masks
from tf_ardm.generation import sampling
from tf_ardm.serving import servable
from tf_ardm.config import ModelConfig
from tf_ardm.models.ardm import Denoiser, OAARDM


def counting_denoiser(shape=(2, 3, 1), k=7):
  return Denoiser(ModelConfig("x", "image", list(shape), k, "unet", {}), CountingLogits(k))


def test_policy_step_sees_exactly_the_positions_before_its_left_boundary():
  """With policy [0, 2, 5], the 6 positions get 0, 0, 2, 2, 2, 5 known values."""
  denoiser = counting_denoiser()
  sigma = masks.sample_sigma(3, 6, seed=[1, 1])
  x = tf.fill([3, 2, 3, 1], denoiser.config.absorbing)
  out = sampling.sample_with_policy(denoiser, x, sigma, tf.constant([0, 2, 5]), [0, 0])
  steps = sigma.numpy()
  expected = np.where(steps < 2, 0, np.where(steps < 5, 2, 5))
  np.testing.assert_array_equal(out.numpy().reshape(3, 6), expected)


def test_full_budget_is_sequential_sampling():
  denoiser = counting_denoiser()
  out = sampling.sample(denoiser, 4, tf.range(6), tf.constant([3, 3]))
  sigma = masks.sample_sigma(4, 6, seed=tf.random.experimental.stateless_split([3, 3], 2)[0])
  np.testing.assert_array_equal(out.numpy().reshape(4, 6), sigma.numpy() % 7)


def test_sampling_is_seeded_and_in_range():
  config = tiny_config()
  model = OAARDM(config)
  a = sampling.sample(model.ema, 5, tf.constant([0, 3, 9]), tf.constant([1, 2]))
  b = sampling.sample(model.ema, 5, tf.constant([0, 3, 9]), tf.constant([1, 2]))
  c = sampling.sample(model.ema, 5, tf.constant([0, 3, 9]), tf.constant([1, 3]))
  np.testing.assert_array_equal(a, b)
  assert not np.array_equal(a, c)
  assert a.numpy().min() >= 0 and a.numpy().max() < config.num_classes


def test_infill_keeps_known_values_and_orders_them_first():
  config = tiny_config()
  model = OAARDM(config)
  x = tf.random.stateless_uniform([3, 4, 4, 1], [4, 4], 0, 5, tf.int32)
  known = tf.cast(tf.random.stateless_uniform([3, 16], [5, 5]) < 0.4, tf.int32)
  known = tf.tensor_scatter_nd_update(known, [[0, 0]], [1])
  sigma = sampling.infill_order(known, tf.constant([6, 6]))
  n = tf.reduce_sum(known, 1)
  # Known positions take steps 0..n-1.
  np.testing.assert_array_equal(tf.reduce_sum(tf.cast(sigma < n[:, None], tf.int32) * known, 1), n)
  policy = sampling.infill_policy(n, 16, 3)
  np.testing.assert_array_equal(policy[:, 0], n)
  out = sampling.sample_with_policy(model.ema, x, sigma, policy, tf.constant([7, 7])).numpy()
  keep = known.numpy().reshape(3, 4, 4, 1) == 1
  np.testing.assert_array_equal(out[keep], x.numpy()[keep])


def test_conditional_likelihood_of_uniform_model():
  """-log2 p(x_unknown | x_known) = (#unknown) * log2 K for a uniform model."""
  config = ModelConfig("x", "image", [4, 4, 1], 8, "unet", {})
  denoiser = Denoiser(config, ConstantLogits(np.zeros(8)))
  known = tf.constant([[1] * 5 + [0] * 11, [1] * 9 + [0] * 7])
  sigma = sampling.infill_order(known, tf.constant([1, 2]))
  policy = sampling.infill_policy(tf.reduce_sum(known, 1), 16, 4)
  bits = denoiser.log_prob_bits(tf.zeros([2, 4, 4, 1], tf.int32), sigma, policy)
  np.testing.assert_allclose(bits, [11 * 3.0, 7 * 3.0], rtol=1e-5)


def test_model_without_loss_components_refuses_budgets_below_d():
  model = OAARDM(tiny_config())
  scorer = servable.Servable(model)
  np.testing.assert_array_equal(scorer.policy(budget=tf.constant(16)), np.arange(16))
  with pytest.raises(tf.errors.InvalidArgumentError, match="no loss components"):
    scorer.policy(budget=tf.constant(4))
  with pytest.raises(tf.errors.InvalidArgumentError, match="budget must be"):
    scorer.policy(budget=tf.constant(17))


@pytest.fixture(scope="module")
def tiny_servable():
  return servable.Servable(OAARDM(tiny_config()))


@pytest.mark.parametrize("call,message", [
    (lambda s, x: s.step_loss(x, tf.constant([1, 2, 3]), tf.constant(0)),
     "t must have the batch size of x"),
    (lambda s, x: s.step_loss(x, tf.constant([16, 2]), tf.constant(0)),
     "t must be < S·D = 16"),
    (lambda s, x: s.step_loss(x, tf.constant([-1, 2]), tf.constant(0)), "t must be >= 0"),
    (lambda s, x: s.infill(x, tf.zeros([3, 4, 4, 1], tf.int32), tf.constant(4),
                           tf.constant(0)), "known must have the batch size of x"),
    (lambda s, x: s.elbo(x, tf.constant([0, 5, 3]), tf.constant(0)),
     "non-decreasing"),
    (lambda s, x: s.elbo(x, tf.constant([0, 16]), tf.constant(0)), "< D = 16"),
    (lambda s, x: s.log_prob(x + 5, tf.constant(16)), "values >= K = 5"),
])
def test_signature_inputs_that_do_not_fit_give_clear_errors(tiny_servable, call, message):
  with pytest.raises(tf.errors.InvalidArgumentError, match=message):
    call(tiny_servable, tf.zeros([2, 4, 4, 1], tf.int32))
