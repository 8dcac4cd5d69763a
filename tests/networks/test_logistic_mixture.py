"""The discretized logistic mixture output (networks/logistic_mixture.py) and its
integer version (networks/integer.py's IntegerLogisticMixture): against
tensorflow_probability, exact cases, the near-uniform start, a model that
trains, samples and scores with it, and the integer head's exactness."""
import math

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

from conftest import tiny_config
from tf_ardm import models
from tf_ardm import seeding
from tf_ardm.config import ModelConfig
from tf_ardm.errors import UserError
from tf_ardm.generation import sampling
from tf_ardm.networks import integer
from tf_ardm.networks import logistic_mixture as lm

tfd = tfp.distributions


def _sigmoid(x):
  return 1.0 / (1.0 + math.exp(-x))


def _tfp_log_probs(raw, k, m):
  """float64 [..., K] log P from tfp: a MixtureSameFamily of QuantizedDistribution(Logistic).

  In class-index units: class k is ceil(X) for X = (x + 1) K / 2 - 1, which
  puts class k on [2k/K - 1, 2(k+1)/K - 1] of x, and the quantization's
  low = 0 and high = K - 1 take the tails.
  """
  logits, means, log_scales = [v.numpy().astype(np.float64)
                               for v in lm.parameters(tf.constant(raw, tf.float32), m)]
  mixture = tfd.MixtureSameFamily(
      tfd.Categorical(logits=logits),
      tfd.QuantizedDistribution(tfd.Logistic((means + 1.0) * k / 2 - 1.0,
                                             np.exp(log_scales) * k / 2),
                                low=0.0, high=k - 1.0))
  classes = np.arange(k, dtype=np.float64).reshape([k] + [1] * (raw.ndim - 1))
  return np.moveaxis(mixture.log_prob(classes).numpy(), 0, -1)


@pytest.mark.parametrize("k,m", [(2, 1), (17, 3), (256, 5), (256, 10)])
def test_matches_tfp_quantized_logistic_mixture(k, m):
  rng = np.random.default_rng(k + m)
  raw = rng.normal(size=(3, 4, 3 * m)) * np.array([3.0] * m + [1.0] * m + [2.0] * m)
  ours = lm.log_probs(tf.constant(raw, tf.float32), k, m).numpy()
  reference = _tfp_log_probs(raw, k, m)
  assert ours.shape == (3, 4, k) and ours.dtype == np.float32
  np.testing.assert_allclose(np.exp(ours), np.exp(reference), atol=2e-7)
  likely = np.exp(reference) > 1e-5
  np.testing.assert_allclose(ours[likely], reference[likely], atol=2e-4)
  np.testing.assert_allclose(np.exp(ours.astype(np.float64)).sum(-1), 1.0, atol=2e-6)


def test_exact_cases():
  # K = 2, one component centred at 0 (its offset), any scale: 1/2 each.
  for log_scale in (-3.0, 0.0, 5.0):
    out = lm.log_probs(tf.constant([[0.0, 0.0, log_scale]]), 2, 1).numpy()
    np.testing.assert_allclose(out, np.log([[0.5, 0.5]]), rtol=1e-6)
  # Zero parameters, M = 1: the standard logistic (scale 1/1) cut at -1/2, 0, 1/2.
  expected = [_sigmoid(-0.5), 0.5 - _sigmoid(-0.5), _sigmoid(0.5) - 0.5, 1 - _sigmoid(0.5)]
  out = lm.log_probs(tf.zeros([3]), 4, 1).numpy()
  np.testing.assert_allclose(np.exp(out), expected, rtol=1e-6)
  # The uniform limit: M = K components at the K bin centres (the offsets),
  # equal weights, the smallest scale e^-7: each class 1/K to float precision.
  k = 16
  raw = np.concatenate([np.zeros(2 * k), np.full(k, -100.0)]).astype(np.float32)
  np.testing.assert_allclose(np.exp(lm.log_probs(tf.constant(raw), k, k).numpy()),
                             np.full(k, 1.0 / k), rtol=1e-6)
  np.testing.assert_allclose(lm.offsets(k), (2 * np.arange(k) + 1.0) / k - 1.0)
  # The wide limit: the log-scale clipped at 7: inner classes have mass
  # sigma(b / s) - sigma(a / s) with s = e^7, nearly (2/K) / (4 s) each.
  out = np.exp(lm.log_probs(tf.constant([0.0, 0.0, 100.0]), 8, 1).numpy().astype(np.float64))
  s = math.exp(lm.MAX_LOG_SCALE)
  edges = [2 * i / 8 - 1 for i in range(1, 8)]
  cdf = [0.0] + [_sigmoid(e / s) for e in edges] + [1.0]
  np.testing.assert_allclose(out, np.diff(cdf), rtol=1e-4)
  # A mixture symmetric about 0 gives a symmetric distribution.
  raw = np.array([0.3, 0.3, 0.2, -0.2, -1.0, -1.0], np.float32)  # Offsets -1/2, 1/2.
  out = lm.log_probs(tf.constant(raw), 10, 2).numpy()
  np.testing.assert_allclose(out, out[::-1], atol=1e-6)


def test_extreme_parameters_stay_normalised_with_finite_gradients():
  raw = tf.constant([[[80.0, -80.0, 1e4, -1e4, 1e4, -1e4]],
                     [[0.0, 0.0, 0.0, 0.0, -1e4, 1e4]]], tf.float32)
  x = tf.constant([[0], [255]])
  with tf.GradientTape() as tape:
    tape.watch(raw)
    out = lm.log_probs(raw, 256, 2)
    picked = tf.gather(out, x, batch_dims=2)
  grad = tape.gradient(picked, raw).numpy()
  assert np.all(np.isfinite(out.numpy())) and np.all(np.isfinite(grad))
  np.testing.assert_allclose(np.exp(out.numpy().astype(np.float64)).sum(-1), 1.0, atol=1e-5)


@pytest.mark.parametrize("k,m", [(2, 1), (17, 3), (256, 10)])
def test_one_class_range_is_log_probs_at_the_target(k, m):
  """The training path's O(M) log P(target), the range [target, target + 1),
  is the full [..., K] table's entry, for every class (both edge bins
  included), with its gradient."""
  rng = np.random.default_rng(7 * k + m)
  raw = tf.constant(rng.normal(size=(4, k, 3 * m)) * 3.0, tf.float32)
  target = tf.constant(np.tile(np.arange(k), (4, 1)), tf.int32)  # Every class.
  with tf.GradientTape(persistent=True) as tape:
    tape.watch(raw)
    fast = lm.range_log_prob(raw, target, target + 1, k, m)
    full = tf.gather(lm.log_probs(raw, k, m), target, batch_dims=2)
  assert fast.shape == (4, k) and fast.dtype == tf.float32
  np.testing.assert_allclose(fast.numpy(), full.numpy(), rtol=1e-6, atol=1e-6)
  grad_fast, grad_full = tape.gradient(fast, raw).numpy(), tape.gradient(full, raw).numpy()
  # Scales up to e^7 make gradients of ~1e3: float32 rounding relative to those.
  np.testing.assert_allclose(grad_fast, grad_full, rtol=1e-5,
                             atol=1e-6 * np.abs(grad_full).max())
  # Extreme parameters: finite, and the same as the table.
  raw = tf.constant([[80.0, -80.0, 1e4, -1e4, 1e4, -1e4]] * 2, tf.float32)
  target = tf.constant([0, k - 1], tf.int32)
  fast = lm.range_log_prob(raw, target, target + 1, k, 2).numpy()
  assert np.all(np.isfinite(fast))
  np.testing.assert_allclose(fast, tf.gather(lm.log_probs(raw, k, 2), target,
                                             batch_dims=1).numpy(), atol=1e-6)


@pytest.mark.parametrize("k,m", [(17, 3), (256, 10)])
def test_range_log_prob_is_the_tables_mass_over_the_range(k, m):
  """log P(lower <= class < upper) is the logsumexp of the full table over
  the range (edge bins and the whole range included), with its gradient."""
  rng = np.random.default_rng(k + m)
  raw = tf.constant(rng.normal(size=(64, 3 * m)) * 3.0, tf.float32)
  lower = rng.integers(0, k, 64)
  upper = np.minimum(lower + rng.integers(1, k + 1, 64), k)
  lower[:3], upper[:3] = [0, 0, k - 1], [k, 1, k]
  inside = np.arange(k) >= lower[:, None]
  inside &= np.arange(k) < upper[:, None]
  with tf.GradientTape(persistent=True) as tape:
    tape.watch(raw)
    fast = lm.range_log_prob(raw, lower.astype(np.int32), upper.astype(np.int32), k, m)
    table = lm.log_probs(raw, k, m)
    full = tf.reduce_logsumexp(tf.where(inside, table, -np.inf), axis=-1)
  np.testing.assert_allclose(fast.numpy(), full.numpy(), rtol=1e-5, atol=2e-6)
  np.testing.assert_allclose(fast.numpy()[0], 0.0, atol=1e-7)  # The whole range.
  grad_fast, grad_full = tape.gradient(fast, raw).numpy(), tape.gradient(full, raw).numpy()
  np.testing.assert_allclose(grad_fast, grad_full, rtol=1e-4,
                             atol=1e-5 * np.abs(grad_full).max())


def test_upscale_objective_takes_two_ranges_and_agrees_with_the_full_table():
  """An Upscale model with the mixture (data parametrisation) scores each
  stage as the mass of x_future's classes over x_past's, and agrees with
  StageSpace.log_probs over the full table at every stage."""
  seeding.set_random_seed(0)
  config = ModelConfig("photos", "image", [4, 4, 1], 16, "unet",
                       dict(channels=16, num_res_blocks=1), 0.001, model_type="upscale",
                       branching=4, transition="zero_lsb",
                       output_distribution="logistic_mixture", num_mixtures=3)
  model = models.build(config)
  denoiser = model.ema
  rng = np.random.default_rng(4)
  x = tf.constant(rng.integers(0, 16, (6, 4, 4, 1)), tf.int32)
  known = tf.constant(rng.integers(0, 2, (6, 16)), tf.int32)
  t = tf.reduce_sum(known, axis=1)
  for stage in range(config.num_stages):
    stages = tf.fill([6], stage)
    x_future, x_past = denoiser.stage_inputs(x, stages)
    assert denoiser.mixture_ranges(x_future, x_past, stages) is not None
    fast = denoiser.known_log_prob(x, known, t, stages).numpy()
    x_in = tf.where(tf.reshape(known, x.shape) > 0, x_future, x_past)
    logits = denoiser.stage_logits(denoiser.logits(x_in, t, known, stages), x_past, stages)
    full = tf.reshape(tfp.distributions.Categorical(logits=logits).log_prob(
        denoiser.target(x_future, stages)), [6, -1]).numpy()
    np.testing.assert_allclose(fast, full, atol=2e-5)
    assert fast.max() <= 1e-6


def test_the_objective_uses_the_target_path_and_agrees_with_the_full_one():
  """An OA model with the mixture scores a batch through the target's class
  alone; its log-likelihoods equal the categorical path's over the full table."""
  seeding.set_random_seed(0)
  config = _mixture_config()
  model = models.build(config)
  rng = np.random.default_rng(3)
  x = tf.constant(rng.integers(0, 17, (6, 4, 4, 1)), tf.int32)
  known = tf.constant(rng.integers(0, 2, (6, 16)), tf.int32)
  t = tf.reduce_sum(known, axis=1)
  denoiser = model.ema
  assert denoiser.mixture_ranges(x, x, None) is not None
  fast = denoiser.known_log_prob(x, known, t).numpy()
  x_in = tf.where(tf.reshape(known, x.shape) > 0, x, config.absorbing)
  full = tf.reshape(tfp.distributions.Categorical(
      logits=denoiser.logits(x_in, t, known)).log_prob(x), [6, -1]).numpy()
  np.testing.assert_allclose(fast, full, atol=1e-5)


def _mixture_config(**kwargs):
  return ModelConfig("digits", "image", [4, 4, 1], 17, "unet",
                     dict(channels=16, num_res_blocks=1), 0.001,
                     output_distribution="logistic_mixture", num_mixtures=3, **kwargs)


def test_config_checks_and_json():
  config = _mixture_config()
  assert config.network_outputs == 9 and config.output_classes == 17
  assert ModelConfig.from_json(config.to_json()) == config
  # A categorical config's JSON has no output fields (unchanged fingerprints).
  assert "output_distribution" not in tiny_config().to_json()
  with pytest.raises(UserError, match="num_mixtures >= 1"):
    ModelConfig("digits", "image", [4, 4, 1], 17, "unet", {},
                output_distribution="logistic_mixture", num_mixtures=0)
  with pytest.raises(UserError, match="images"):
    ModelConfig("text", "text", [8, 1], 28, "transformer", {},
                output_distribution="logistic_mixture", num_mixtures=2)
  with pytest.raises(UserError, match="applies to the logistic_mixture output only"):
    ModelConfig("digits", "image", [4, 4, 1], 17, "unet", {}, num_mixtures=2)
  with pytest.raises(UserError, match="data parametrization"):
    ModelConfig("photos", "image", [2, 2, 3], 256, "unet", {}, model_type="upscale",
                branching=16, parametrization="direct",
                output_distribution="logistic_mixture", num_mixtures=2)


def test_model_starts_near_uniform_trains_samples_and_scores():
  seeding.set_random_seed(0)
  config = _mixture_config()
  model = models.build(config)
  x = np.random.default_rng(0).integers(0, 17, (8, 4, 4, 1)).astype(np.int32)
  known = tf.zeros([8, 4, 4, 1], tf.bool)
  logits = model.ema.logits(tf.fill([8, 4, 4, 1], config.absorbing), tf.zeros([8], tf.int32),
                            known)
  assert logits.shape == (8, 4, 4, 1, 17)
  p = np.exp(logits.numpy().astype(np.float64))
  np.testing.assert_allclose(p.sum(-1), 1.0, atol=1e-5)
  # The zero-initialised output layer: every position gets the mixture of
  # zero parameters, within 3.6% of the uniform entropy for M = 3, K = 17.
  start = lm.log_probs(tf.zeros([9]), 17, 3).numpy()
  np.testing.assert_allclose(logits.numpy(), np.broadcast_to(start, logits.shape), atol=1e-6)
  entropy = -(p * np.log2(p)).sum(-1)
  assert np.all(entropy > 0.96 * math.log2(17)), entropy.min()
  model.compile(optimizer=tf.keras.optimizers.Adam(3e-3))
  data = tf.data.Dataset.from_tensor_slices(np.repeat(x, 8, 0)).batch(8).repeat()
  history = model.fit(data, epochs=2, steps_per_epoch=15, verbose=0)
  losses = history.history["loss"]
  assert np.all(np.isfinite(losses)) and losses[-1] < losses[0], losses
  samples = sampling.sample(model.ema, 4, np.arange(config.num_steps), seed=[1, 2]).numpy()
  assert samples.shape == (4, 4, 4, 1) and samples.min() >= 0 and samples.max() < 17


class _Raw(integer.IntegerNetwork):
  """An integer body that returns fixed int64 parameters [B, ..., 3M]."""

  def __init__(self, raw):
    super().__init__()
    self.raw = tf.constant(raw, tf.int64)

  def __call__(self, x_in, t, mask, direct_conv=True):
    return self.raw


@pytest.mark.parametrize("k,m", [(17, 3), (256, 10)])
def test_integer_head_agrees_with_the_float_one_and_is_exact(k, m):
  rng = np.random.default_rng(m)
  raw = rng.normal(size=(6, 5, 3 * m)) * np.array([3.0] * m + [0.7] * m + [2.5] * m)
  raw[0, 0, 2 * m:] = 50.0  # Log-scales clipped at both ends.
  raw[0, 1, 2 * m:] = -50.0
  raw[0, 2, m:2 * m] = 10.0  # Means clipped.
  q = np.round(raw * 2.0**10).astype(np.int64)
  head = integer.IntegerLogisticMixture(_Raw(q), k, m)
  logits = head(None, None, None)
  assert logits.dtype == tf.int64 and logits.shape == (6, 5, k)
  weights = head.softmax(logits).numpy().astype(np.float64)
  p_int = weights / weights.sum(-1, keepdims=True)
  p_float = np.exp(lm.log_probs(tf.constant(q / 2.0**10, tf.float32), k, m).numpy()
                   .astype(np.float64))
  kl_bits = (p_float * (np.log2(p_float + 1e-300) - np.log2(p_int))).sum(-1)
  # Measured: at most 3.4e-4 bits, at the narrowest scale (e^-7, where the
  # float32 reference's own rounding of (edge - mean) / s is of that order);
  # 3e-5 or less elsewhere.
  assert kl_bits.max() < 1e-3 and np.median(kl_bits) < 1e-5, kl_bits
  # One integer result: XLA and plain ops agree, and a row does not depend on the others.
  xla = tf.function(lambda: head(None, None, None), jit_compile=True)()
  np.testing.assert_array_equal(xla.numpy(), logits.numpy())
  alone = integer.IntegerLogisticMixture(_Raw(q[2:3]), k, m)(None, None, None)
  np.testing.assert_array_equal(alone.numpy(), logits.numpy()[2:3])
  assert len(head.arrays()) > 3
