"""The OA-ARDM objective: spec §11 cases 6-9, 11, masks and exact likelihoods."""
import math

import numpy as np
import pytest
import tensorflow as tf

from conftest import ConstantLogits, tiny_config
from tf_ardm.generation import distributions
from tf_ardm.generation import masks
from tf_ardm.config import ModelConfig
from tf_ardm.models.ardm import Denoiser, OAARDM


def uniform_denoiser(shape, num_classes, kind="image"):
  config = ModelConfig("x", kind, list(shape), num_classes, "unet", {})
  return Denoiser(config, ConstantLogits(np.zeros(num_classes)))


def random_orders(batch, d, seed=0):
  return masks.sample_sigma(batch, d, seed=[seed, 0])


@pytest.mark.parametrize("shape,k,expected", [
    ((32, 32, 3), 256, -8.0),          # spec §11.6, CIFAR-10
    ((250, 1), 28, -4.807355),         # spec §11.6, text8
    ((8, 8, 1), 17, -math.log2(17)),   # digits
])
def test_uniform_logits_give_log2_k_for_every_t(shape, k, expected):
  denoiser = uniform_denoiser(shape, k, "text" if shape[-1] == 1 and k == 28 else "image")
  d = int(np.prod(shape))
  ts = np.array([0, 1, d // 2, d - 2, d - 1], np.int32)
  x = tf.random.stateless_uniform([len(ts), *shape], [1, 2], 0, k, tf.int32)
  terms = denoiser.elbo_terms(x, random_orders(len(ts), d), tf.constant(ts))
  np.testing.assert_allclose(terms["elbo"], expected, atol=2e-5)
  # Each step's loss component is exactly log2(K) / D.
  np.testing.assert_allclose(terms["elbo_per_t"], expected / d, rtol=1e-5)


def test_ce_term_of_uniform_image_model():
  """Spec §11.7: nce = -(D - t) * 8 / D."""
  denoiser = uniform_denoiser((32, 32, 3), 256)
  ts = tf.constant([1536, 0, 3071])
  x = tf.zeros([3, 32, 32, 3], tf.int32)
  terms = denoiser.elbo_terms(x, random_orders(3, 3072), ts)
  np.testing.assert_allclose(terms["nce"], [-4.0, -8.0, -8 / 3072], rtol=1e-5)


def test_elbo_multipliers():
  """Spec §11.8: the ELBO weight D/(D - t) for 0-based t."""
  denoiser = uniform_denoiser((32, 32, 3), 256)
  ts = tf.constant([0, 1, 1536, 3071])
  terms = denoiser.elbo_terms(tf.zeros([4, 32, 32, 3], tf.int32),
                              random_orders(4, 3072), ts)
  np.testing.assert_allclose(terms["elbo"] / terms["nce"],
                             [1, 1.0003256, 2, 3072], rtol=1e-6)


def test_masks_spec_case():
  """Spec §11.9."""
  sigma = tf.constant([[2, 0, 3, 1]])
  np.testing.assert_array_equal(masks.known_mask(sigma, 2), [[0, 1, 0, 1]])
  np.testing.assert_array_equal(masks.current_mask(sigma, 2), [[1, 0, 0, 0]])
  np.testing.assert_array_equal(masks.known_mask(sigma, 1), [[0, 1, 0, 0]])
  np.testing.assert_array_equal(masks.current_mask(sigma, 1, 3), [[1, 0, 0, 1]])


def test_mask_semantics_for_every_t():
  d = 10
  sigma = random_orders(3, d, seed=5)
  np.testing.assert_array_equal(np.sort(sigma.numpy(), axis=1), np.tile(np.arange(d), (3, 1)))
  for t in range(d):
    known = masks.known_mask(sigma, t).numpy()
    current = masks.current_mask(sigma, t).numpy()
    assert (known.sum(1) == t).all()
    assert (current.sum(1) == 1).all()
    assert not (known & current).any()
  per_example = masks.known_mask(sigma, tf.constant([0, 4, 9])).numpy()
  np.testing.assert_array_equal(per_example.sum(1), [0, 4, 9])


def test_corrupt_writes_absorbing_state_at_unknown_positions():
  x = tf.constant([[3, 1, 4, 1]])
  known = tf.constant([[1, 0, 1, 0]])
  np.testing.assert_array_equal(masks.corrupt(x, known, 9), [[3, 9, 4, 9]])


def test_absorbing_state_per_modality():
  """Spec §3.3: K//2 for images (no new class), K for text (vocabulary K+1)."""
  image = tiny_config("image", num_classes=256)
  text = tiny_config("text", shape=(8, 1), num_classes=28)
  assert (image.absorbing, image.input_classes) == (128, 256)
  assert (text.absorbing, text.input_classes) == (28, 29)


def test_safe_probs_spec_case():
  """Spec §11.11."""
  uniform = distributions.safe_probs(tf.zeros([256])).numpy()
  np.testing.assert_allclose(uniform, 1 / 256, rtol=1e-6)
  np.testing.assert_allclose(distributions.safe_probs(tf.zeros([28])), 1 / 28, rtol=1e-6)
  peaked = distributions.safe_probs(tf.one_hot(0, 256) * 100.0).numpy()
  np.testing.assert_allclose(peaked[0], 0.99490, atol=1e-5)
  np.testing.assert_allclose(-np.log2(peaked[0]), 0.0073766, rtol=1e-3)
  np.testing.assert_allclose(-np.log2(peaked[1:]), 15.609640, rtol=1e-5)


def test_exact_sampling_matches_probabilities():
  """Inverse-CDF sampling in float64: a chi-square goodness-of-fit test."""
  probs = np.array([0.5, 0.25, 0.125, 0.0625, 0.0625 - 1e-6, 1e-6])
  logits = tf.constant(np.log(probs), tf.float32)
  n = 200000
  draws = distributions.sample(tf.broadcast_to(logits, [n, 6]), [3, 4]).numpy()
  counts = np.bincount(draws, minlength=6)
  expected = probs * n
  chi2 = ((counts[:5] - expected[:5]) ** 2 / expected[:5]).sum()
  assert chi2 < 20.5  # p = 0.001 at 4 degrees of freedom.
  assert draws.min() >= 0 and draws.max() < 6


def test_log_prob_is_categorical_log_softmax():
  logits = tf.random.stateless_normal([7, 5], [0, 1])
  x = tf.constant([0, 1, 2, 3, 4, 0, 1])
  expected = tf.gather(tf.nn.log_softmax(logits), x, batch_dims=1)
  np.testing.assert_allclose(distributions.log_prob(logits, x), expected, rtol=1e-6)


class PositionLogits(tf.keras.layers.Layer):
  """Logits that depend on the known values, so that orders matter."""

  def call(self, x_in, t, mask, training=False):
    k = 5
    context = tf.reduce_sum(tf.cast(x_in, tf.float32) * mask, axis=[1, 2, 3])
    base = tf.one_hot(x_in % k, k) * 0.3 + tf.cast(t, tf.float32)[:, None, None, None, None] * 0.01
    return base + context[:, None, None, None, None] * 0.05


def test_exact_log_prob_equals_sum_of_sequential_steps():
  config = ModelConfig("x", "image", [2, 2, 1], 5, "unet", {})
  denoiser = Denoiser(config, PositionLogits())
  x = tf.constant([[[[1], [4]], [[0], [2]]], [[[3], [3]], [[1], [0]]]])
  sigma = random_orders(2, 4, seed=9)
  exact = denoiser.log_prob_bits(x, sigma, tf.range(4)).numpy()
  manual = np.zeros(2)
  for t in range(4):
    known = tf.reshape(masks.known_mask(sigma, t), x.shape)
    logits = denoiser.logits(masks.corrupt(x, known, config.absorbing), tf.fill([2], t), known)
    logp = tf.reshape(distributions.log_prob(logits, x), [2, 4])
    manual -= tf.reduce_sum(tf.cast(masks.current_mask(sigma, t), tf.float32) * logp, 1).numpy()
  np.testing.assert_allclose(exact, manual / np.log(2), rtol=1e-5)
  # Budget 1: all four positions from the empty state in one call.
  one_call = denoiser.log_prob_bits(x, sigma, tf.constant([0])).numpy()
  empty = tf.fill(x.shape, config.absorbing)
  logits = denoiser.logits(empty, tf.zeros([2], tf.int32), tf.zeros_like(x))
  expected = -tf.reduce_sum(distributions.log_prob(logits, x), [1, 2, 3]).numpy() / np.log(2)
  np.testing.assert_allclose(one_call, expected, rtol=1e-5)


def test_policy_elbo_weights_average_to_policy_cost():
  """Spec §11.10: policy [0, 2], N = 5 weighs index 0 by 4 and index 1 by 6.

  A uniform K = 4 model loses 2/5 bits/dim per step, so index 0 estimates
  4 * -0.4 and index 1 estimates 6 * -0.4; their mean is the bound, -2.
  """
  denoiser = uniform_denoiser((5, 1), 4)
  x = tf.zeros([2, 5, 1], tf.int32)
  out = denoiser.elbo_with_policy(x, random_orders(2, 5), tf.constant([0, 2]),
                                  tf.constant([0, 1])).numpy()
  np.testing.assert_allclose(out, [-1.6, -2.4], rtol=1e-6)
  assert out.mean() == pytest.approx(-2.0)


def test_random_orders_are_stable_argsorts_of_the_models_draws():
  """Training orders: masks.sample_sigma of the step's stateless seed (the
  noise of earlier versions, so the same permutations); evaluation orders: of
  a seed from the model's generator, reproducible from the model's seed."""
  model = OAARDM(tiny_config(), seed=3)
  sigma, t = model.training_order_and_time(8, tf.constant(5, tf.int64))
  seeds = tf.random.experimental.stateless_split(tf.constant([3, 5], tf.int64), 2)
  np.testing.assert_array_equal(sigma, masks.sample_sigma(8, 16, seed=seeds[0]))
  noise = tf.random.stateless_uniform([8, 16], seeds[0])
  np.testing.assert_array_equal(sigma, tf.argsort(noise, axis=-1))
  np.testing.assert_array_equal(
      t, tf.random.stateless_uniform([8], seeds[1], 0, 16, dtype=tf.int32))
  first = [v.numpy() for v in model.sample_order_and_time(8)]
  second = [v.numpy() for v in model.sample_order_and_time(8)]
  for sigma in (first[0], second[0]):
    np.testing.assert_array_equal(np.sort(sigma, 1), np.tile(np.arange(16), [8, 1]))
  assert not np.array_equal(first[0], second[0])
  model.rng = tf.random.Generator.from_seed(3)
  again = [v.numpy() for v in model.sample_order_and_time(8)]
  for a, b in zip(first, again):
    np.testing.assert_array_equal(a, b)
