"""Absorbing diffusion and the OA-ARM as special cases of the ARDM (issue 7)."""
import dataclasses
import itertools
import math

import numpy as np
import pytest
import tensorflow as tf

from conftest import ConstantLogits, CountingLogits, tiny_config
from tf_ardm.models import checkpoints
from tf_ardm.generation import distributions
from tf_ardm.generation import dynamic_programming as dp
from tf_ardm.generation import masks
from tf_ardm import models
from tf_ardm.generation import sampling
from tf_ardm.serving import servable
from tf_ardm.config import ModelConfig
from tf_ardm.errors import UserError
from tf_ardm.models import absorbing
from tf_ardm.models.ardm import Denoiser, OAARDM
from tf_ardm.models.loss_tracker import LossTracker


class ContextLogits(tf.keras.layers.Layer):
  """Logits that depend on the known values, their positions and their number."""

  def __init__(self, num_classes, **kwargs):
    super().__init__(**kwargs)
    self.k = num_classes

  def call(self, x_in, t, mask, training=False):
    b = tf.shape(x_in)[0]
    x = tf.cast(tf.reshape(x_in, [b, -1]), tf.float32)
    m = tf.reshape(mask, [b, -1])
    d = tf.shape(x)[1]
    position = tf.cast(tf.range(d), tf.float32)
    context = tf.reduce_sum(x * m * (position + 1.0), axis=1)[:, None, None]
    known = tf.reduce_sum(m, axis=1)[:, None, None]
    k = tf.cast(tf.range(self.k), tf.float32)[None, None, :]
    logits = (2.0 * tf.sin(1.3 * (context + 1.0) * (k + 1.0) + 0.7 * position[None, :, None])
              + 0.5 * known * tf.cos(k))
    return tf.reshape(logits, tf.concat([tf.shape(x_in), [self.k]], 0))


class KnownCountLogits(tf.keras.layers.Layer):
  """Class 0 gets logit alpha * (known / D), the others 0: better with more context."""

  def __init__(self, num_classes, alpha=6.0, **kwargs):
    super().__init__(**kwargs)
    self.k, self.alpha = num_classes, alpha

  def call(self, x_in, t, mask, training=False):
    b = tf.shape(x_in)[0]
    fraction = tf.reduce_mean(tf.reshape(mask, [b, -1]), axis=1)
    logit0 = self.alpha * fraction[:, None] * tf.one_hot(0, self.k)[None]
    return tf.broadcast_to(logit0[:, None, None, None, :],
                           tf.concat([tf.shape(x_in), [self.k]], 0))


def denoiser(network, shape, num_classes, kind="image"):
  return Denoiser(ModelConfig("x", kind, list(shape), num_classes, "unet", {}), network)


def absorbing_config(steps=8, **kwargs):
  return dataclasses.replace(tiny_config(**kwargs), objective="absorbing",
                             diffusion_steps=steps)


@pytest.mark.parametrize("shape,k,steps", [((4, 4, 1), 5, 20), ((250, 1), 28, 1000)])
def test_uniform_logits_give_log2_k(shape, k, steps):
  """Every term is -(T/t) m log2(K) / D; its expectation and the closed form are -log2 K."""
  kind = "text" if k == 28 else "image"
  den = denoiser(ConstantLogits(np.zeros(k)), shape, k, kind)
  d = den.num_steps
  x = tf.random.stateless_uniform([6, *shape], [1, 2], 0, k, tf.int32)
  t = tf.constant([1, 2, steps // 2, steps - 1, steps, 3])
  absorbed = tf.cast(tf.random.stateless_uniform([6, d], [3, 4]) < 0.3, tf.int32)
  terms = absorbing.elbo_terms(den, x, t, absorbed, steps)
  m = absorbed.numpy().sum(1)
  np.testing.assert_allclose(terms["elbo"], -steps / t.numpy() * m * math.log2(k) / d,
                             rtol=1e-5)
  np.testing.assert_allclose(terms["elbo_per_t"], -math.log2(k) / d, rtol=1e-5)
  np.testing.assert_array_equal(terms["t"], d - m)
  # Uniform per-step losses log2(K) / D: the T-step loss is log2 K for every T.
  for t_steps in (1, 7, steps, 16 * d):
    assert absorbing.expected_loss(np.full(d, math.log2(k) / d), t_steps) == pytest.approx(
        math.log2(k), rel=1e-9)
  estimates = absorbing.elbo(den, tf.tile(x, [500, *[1] * len(shape)]), steps, [5, 5]).numpy()
  se = estimates.std() / math.sqrt(len(estimates))
  assert abs(estimates.mean() + math.log2(k)) < 4 * se


def _log_probs(network, x, known, absorbing_state):
  """log p(x_i | x_known) at every position, float64 [D] (the network directly)."""
  x_in = np.where(known == 1, x, absorbing_state)[None, :, None, None]
  logits = network(tf.constant(x_in), tf.constant([int(known.sum())]),
                   tf.constant(known[None, :, None, None], tf.float32))
  logp = tf.nn.log_softmax(tf.cast(logits, tf.float64))[0, :, 0, 0].numpy()
  return logp[np.arange(len(x)), x]


def test_single_step_estimator_is_unbiased_for_the_exact_t_step_sum():
  """D = 3, T = 4: sum_t E_{x_t}[(1/t) sum_absorbed log p] by enumerating every x_t."""
  k, steps, x = 3, 4, np.array([2, 0, 1])
  d = len(x)
  network = ContextLogits(k)
  den = denoiser(network, (d, 1, 1), k)
  exact = 0.0
  for t in range(1, steps + 1):
    for absorbed in itertools.product([0, 1], repeat=d):
      absorbed = np.array(absorbed)
      m = absorbed.sum()
      prob = (t / steps)**m * (1 - t / steps)**(d - m)
      logp = _log_probs(network, x, 1 - absorbed, den.config.absorbing)
      exact += prob / t * np.sum(absorbed * logp)
  exact /= d * math.log(2)  # bits/dim, <= 0.
  estimates = absorbing.elbo(den, tf.constant(np.tile(x, [40000, 1])[..., None, None], tf.int32),
                             steps, [7, 7]).numpy()
  se = estimates.std() / math.sqrt(len(estimates))
  assert abs(estimates.mean() - exact) < 4 * se, (estimates.mean(), exact, se)
  # The closed form from the ARDM's exact per-step losses gives the same sum.
  components = np.zeros(d)
  for t in range(d):
    subsets = list(itertools.combinations(range(d), t))
    for subset in subsets:
      known = np.isin(np.arange(d), subset).astype(np.int32)
      logp = _log_probs(network, x, known, den.config.absorbing)
      components[t] -= np.sum((1 - known) * logp) / (d - t) / len(subsets)
  components /= d * math.log(2)
  assert absorbing.expected_loss(components, steps) == pytest.approx(-exact, rel=1e-6)


def test_gap_to_the_ardm_elbo_shrinks_for_t_d_4d_16d():
  """A fixed network that is better with more context: T-step loss -> ARDM loss."""
  shape, k = (8, 8, 1), 5
  den = denoiser(KnownCountLogits(k), shape, k)
  d = den.num_steps
  x = tf.zeros([d, *shape], tf.int32)
  # This network's per-step losses do not depend on the order: exact values.
  components = -den.elbo_terms(x, masks.sample_sigma(d, d, seed=[0, 1]),
                               tf.range(d))["elbo_per_t"].numpy()
  ardm = components.sum()
  gaps = [absorbing.expected_loss(components, f * d) - ardm for f in (1, 4, 16)]
  assert 0 < gaps[2] < gaps[1] < gaps[0], gaps
  assert gaps[1] < gaps[0] / 3 and gaps[2] < gaps[1] / 3, gaps
  # The sampled estimator at T = D agrees with the closed form.
  estimates = -absorbing.elbo(den, tf.zeros([20000, *shape], tf.int32), d, [2, 3]).numpy()
  se = estimates.std() / math.sqrt(len(estimates))
  assert abs(estimates.mean() - (ardm + gaps[0])) < 4 * se


def test_budget_d_policy_sampler_and_likelihood_are_the_oa_arm():
  """One variable per step (DP policy for budget D) is sequential sampling (spec §4.1)."""
  k, shape = 4, (2, 3, 1)
  network = ContextLogits(k)
  den = denoiser(network, shape, k)
  d = den.num_steps
  policy = dp.optimal_policies(np.linspace(1.0, 0.1, d), [d])[0][0]
  np.testing.assert_array_equal(policy, np.arange(d))
  sigma = masks.sample_sigma(5, d, seed=[3, 1])
  seed = tf.constant([4, 2])
  x = tf.fill([5, *shape], den.config.absorbing)
  parallel = sampling.sample_with_policy(den, x, sigma, policy, seed).numpy().reshape(5, d)
  # The OA-ARM: one position per network call, in the order sigma.
  x = np.full([5, d], den.config.absorbing)
  for t in range(d):
    known = (sigma.numpy() < t).astype(np.int32)
    logits = network(tf.constant(x.reshape(5, *shape)), tf.fill([5], t),
                     tf.constant(known.reshape(5, *shape), tf.float32))
    draw = distributions.sample(logits, tf.random.experimental.stateless_fold_in(seed, t))
    x = np.where(sigma.numpy() == t, draw.numpy().reshape(5, d), x)
  np.testing.assert_array_equal(parallel, x)
  # Its likelihood is the OA-ARM chain rule along sigma.
  chain = np.zeros(5)
  for b in range(5):
    for t in range(d):
      known = (sigma.numpy()[b] < t).astype(np.int32)
      chain[b] -= _log_probs(network, x[b], known, den.config.absorbing)[
          sigma.numpy()[b] == t].sum() / math.log(2)
  bits = den.log_prob_bits(tf.constant(x.reshape(5, *shape), tf.int32), sigma, policy).numpy()
  np.testing.assert_allclose(bits, chain, rtol=1e-5)


@pytest.mark.parametrize("steps", [1, 3, 10, 1000])
def test_sampler_steps_and_network_calls(steps):
  """With a network that writes the number of known positions, samples show the steps."""
  d, k = 6, 7
  den = denoiser(CountingLogits(k), (2, 3, 1), k)
  samples, calls = absorbing.sample(den, 2000, steps, tf.constant([1, steps]))
  samples, calls = samples.numpy().reshape(-1, d), calls.numpy()
  for row, n in zip(samples[:200], calls[:200]):
    values = np.unique(row)
    # One value per step: the number of positions generated before it.
    assert len(values) == n
    np.testing.assert_array_equal(values, [np.sum(row < v) for v in values])
  expected = absorbing.expected_calls(d, steps)
  assert abs(calls.mean() - expected) < 4 * calls.std() / math.sqrt(len(calls)) + 1e-9
  assert calls.max() <= min(steps, d)


def test_absorbing_training_fills_the_ardm_loss_tracker(tmp_path):
  config = absorbing_config(steps=4)
  model = models.build(config, ema_decay=0.5)
  assert isinstance(model, absorbing.AbsorbingDiffusion)
  model.compile(optimizer=tf.keras.optimizers.Adam(1e-3))
  x = tf.random.stateless_uniform([32, 4, 4, 1], [0, 1], 0, 5, tf.int32)
  for _ in range(3):  # Eagerly: tracing the train step would take most of the time.
    assert np.isfinite(model.train_step(x)["loss"].numpy())
  # The tracker saw, at each step, one ARDM step per example with something
  # absorbed: the number of known positions of its x_t.
  known = []
  for step in range(3):
    _, absorbed = model.replica_draws(32, step, lambda n, s: absorbing.draw(n, 16, 4, s))
    num_absorbed = absorbed.numpy().sum(1)
    known += list(16 - num_absorbed[num_absorbed > 0])
  np.testing.assert_array_equal(model.loss_tracker.count.numpy(),
                                np.bincount(known, minlength=16))
  checkpoints.save(model, str(tmp_path / "m"))
  restored = checkpoints.restore(str(tmp_path / "m"))
  assert type(restored) is absorbing.AbsorbingDiffusion and restored.config == config
  # Its servable has DP policies and the absorbing ELBO for any T.
  scorer = servable.Servable(restored)
  assert scorer.policy(budget=tf.constant(4)).shape == (4,)
  elbo = scorer.absorbing_elbo(x=x[:8], diffusion_steps=tf.constant(50), seed=tf.constant(0))
  assert elbo["elbo_bpd"].shape == (8,) and np.all(elbo["elbo_bpd"].numpy() <= 0)
  with pytest.raises(tf.errors.InvalidArgumentError, match="T must be >= 1"):
    scorer.absorbing_elbo(x=x[:8], diffusion_steps=tf.constant(0), seed=tf.constant(0))


def test_loss_tracker_skips_unobserved():
  rng = np.random.default_rng(1)
  t, v = rng.integers(0, 5, size=40), rng.random(40)
  keep = rng.random(40) < 0.6
  a, b = LossTracker(5, num_classes=4), LossTracker(5, num_classes=4)
  a.update(tf.constant(t, tf.int32), tf.constant(v, tf.float32), tf.constant(keep))
  b.update(tf.constant(t[keep], tf.int32), tf.constant(v[keep], tf.float32))
  np.testing.assert_array_equal(a.count.numpy(), b.count.numpy())
  np.testing.assert_allclose(a.ema.numpy(), b.ema.numpy(), rtol=1e-6)


def test_bad_input_gives_clear_errors():
  with pytest.raises(UserError, match="T must be an integer >= 1, got 0"):
    absorbing_config(steps=0)
  with pytest.raises(UserError, match="unknown objective 'd3pm'"):
    dataclasses.replace(tiny_config(), objective="d3pm")
  with pytest.raises(UserError, match="applies to the absorbing objective only"):
    dataclasses.replace(tiny_config(), diffusion_steps=10)
  with pytest.raises(UserError, match="objective 'absorbing' does not fit OAARDM"):
    OAARDM(absorbing_config())
  with pytest.raises(UserError, match="objective 'ardm' does not fit AbsorbingDiffusion"):
    absorbing.AbsorbingDiffusion(tiny_config())
  den = denoiser(ConstantLogits(np.zeros(5)), (4, 4, 1), 5)
  x = tf.zeros([2, 4, 4, 1], tf.int32)
  with pytest.raises(UserError, match="T must be an integer >= 1"):
    absorbing.elbo(den, x, 0, [0, 0])
  with pytest.raises(UserError, match="T must be an integer >= 1"):
    absorbing.expected_calls(16, 0)
  with pytest.raises(tf.errors.InvalidArgumentError, match="T must be >= 1"):
    absorbing.sample(den, 2, tf.constant(0), [0, 0])
