"""Optimizers: the linear warm-up, AdamW's decoupled weight decay, clipping."""
import numpy as np
import pytest
import tensorflow as tf

from tf_ardm.training import optimizers


def test_linear_warmup_is_zero_then_linear_then_flat():
  schedule = optimizers.LinearWarmup(2e-3, warmup_steps=4)
  rates = [float(schedule(step)) for step in range(8)]
  np.testing.assert_allclose(rates, [0.0, 5e-4, 1e-3, 1.5e-3, 2e-3, 2e-3, 2e-3, 2e-3],
                             rtol=1e-6)
  assert float(schedule(10**6)) == pytest.approx(2e-3)
  no_warmup = optimizers.LinearWarmup(2e-3, warmup_steps=0)
  assert [float(no_warmup(step)) for step in (0, 1, 100)] == pytest.approx([2e-3] * 3)


def test_cosine_schedule_warms_up_then_decays_to_zero_at_train_steps():
  schedule = optimizers.schedule("cosine", 2e-3, warmup_steps=4, train_steps=12)
  rates = np.array([float(schedule(step)) for step in range(16)])
  np.testing.assert_allclose(rates[:5], [0.0, 5e-4, 1e-3, 1.5e-3, 2e-3], rtol=1e-6)
  # lr (1 + cos(pi (step - 4) / 8)) / 2 after the warm-up: half at step 8.
  expected = 1e-3 * (1 + np.cos(np.pi * (np.arange(4, 16).clip(max=12) - 4) / 8))
  np.testing.assert_allclose(rates[4:], expected, rtol=1e-5, atol=1e-12)
  assert rates[8] == pytest.approx(1e-3) and rates[12:].max() < 1e-12
  assert np.all(np.diff(rates[4:]) <= 0)


def test_schedule_refuses_unknown_names_and_a_decay_within_the_warmup():
  with pytest.raises(ValueError, match="unknown learning-rate schedule 'step'"):
    optimizers.schedule("step", 1e-3)
  with pytest.raises(ValueError, match="needs train_steps"):
    optimizers.schedule("cosine", 1e-3, warmup_steps=10, train_steps=10)


def _step(name, weight_decay, grads, warmup_steps=0, clip_norm=None, steps=1):
  """Weights [3] = (1, -2, 4) after `steps` updates with gradient `grads` [3]
  (or one update per gradient of a list [steps, 3]); learning rate 0.1."""
  w = tf.Variable([1.0, -2.0, 4.0])
  opt = optimizers.build(name, 0.1, warmup_steps, weight_decay=weight_decay,
                         clip_norm=clip_norm)
  grads = np.asarray(grads, np.float32)
  for g in (grads if grads.ndim == 2 else [grads] * steps):
    opt.apply_gradients([(tf.constant(g), w)])
  return w.numpy()


def test_adamw_decays_weights_under_zero_gradient_and_adam_does_not():
  zero = [0.0, 0.0, 0.0]
  np.testing.assert_array_equal(_step("adam", 0.0, zero), [1.0, -2.0, 4.0])
  np.testing.assert_array_equal(_step("adam", 0.5, zero), [1.0, -2.0, 4.0])  # Adam ignores it.
  # Decoupled: w <- w - lr * weight_decay * w, independent of the gradient.
  np.testing.assert_allclose(_step("adamw", 0.5, zero), np.array([1.0, -2.0, 4.0]) * 0.95,
                             rtol=1e-6)
  np.testing.assert_allclose(_step("adamw", 0.5, zero, steps=3),
                             np.array([1.0, -2.0, 4.0]) * 0.95**3, rtol=1e-6)


def test_one_adamw_step_equals_the_closed_form():
  g = np.array([0.5, -1.0, 2.0], np.float32)
  w0 = np.array([1.0, -2.0, 4.0])
  # Adam's first step moves each weight by lr * g / (|g| + eps') = lr * sign(g),
  # and the decay acts on the weights before it.
  expected = w0 * (1 - 0.1 * 0.5) - 0.1 * np.sign(g)
  np.testing.assert_allclose(_step("adamw", 0.5, g), expected, rtol=1e-5)


def test_warmup_makes_the_first_step_a_no_op():
  np.testing.assert_array_equal(_step("adamw", 0.5, [1.0, 1.0, 1.0], warmup_steps=10),
                                [1.0, -2.0, 4.0])


def test_global_norm_clipping_scales_the_gradient():
  # Adam is invariant to one common gradient scale, not to the ratio of
  # successive gradients: clip the first of two (norm 500 -> 5), not the second.
  big, small = [300.0, -400.0, 0.0], [3.0, -4.0, 0.0]
  clipped = _step("adam", 0.0, [big, small], clip_norm=5.0)
  np.testing.assert_allclose(clipped, _step("adam", 0.0, [small, small]), rtol=1e-6)
  unclipped = _step("adam", 0.0, [big, small])
  assert np.abs(unclipped - clipped).max() > 1e-3


@pytest.mark.parametrize("name", ["adam", "adamw"])
def test_fused_updates_match_keras_adam_and_adamw(name):
  """The fused kernels give Keras' own updates, slots and step count, also
  with global-norm clipping, a warm-up and several variables of two shapes."""
  rng = np.random.default_rng(0)
  init = [rng.normal(size=[3, 4]).astype(np.float32), rng.normal(size=[5]).astype(np.float32)]
  grads = [[rng.normal(size=v.shape).astype(np.float32) for v in init] for _ in range(6)]
  kwargs = dict(learning_rate=optimizers.LinearWarmup(0.1, 2), beta_1=0.8, beta_2=0.95,
                epsilon=1e-7, global_clipnorm=1.5)
  keras_class = tf.keras.optimizers.AdamW if name == "adamw" else tf.keras.optimizers.Adam
  extra = dict(weight_decay=0.01) if name == "adamw" else {}
  results = []
  for opt in (keras_class(**kwargs, **extra),
              optimizers.build(name, 0.1, 2, 0.8, 0.95, 1e-7, weight_decay=0.01,
                               clip_norm=1.5)):
    variables = [tf.Variable(v) for v in init]
    step = tf.function(lambda gs, opt=opt, vs=variables: opt.apply_gradients(zip(gs, vs)))
    for gs in grads:
      step([tf.constant(g) for g in gs])
    results.append(([v.numpy() for v in variables],
                    [v.numpy() for v in opt.variables], int(opt.iterations)))
  assert isinstance(opt, optimizers._FusedUpdate)
  (want, want_slots, want_steps), (got, got_slots, got_steps) = results
  assert got_steps == want_steps == 6
  for a, b in zip(want + want_slots, got + got_slots):
    np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-7)
