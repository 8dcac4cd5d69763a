"""Mixed precision training: what computes in which dtype, and that it trains."""
import numpy as np
import pytest
import tensorflow as tf

from conftest import tiny_config
from tf_ardm import seeding
from tf_ardm.errors import UserError
from tf_ardm.networks import precision as precision_lib
from tf_ardm.training import loop
from tf_ardm.training.config import TrainConfig

COMPUTE = {"float32": tf.float32, "bfloat16": tf.bfloat16, "float16": tf.float16}


def _model(config, precision):
  train_config = TrainConfig(batch_size=8, learning_rate=1e-3, precision=precision,
                             jit_compile=False, ema_decay=0.9)
  seeding.set_random_seed(0)  # As loop.train does: the same initial weights.
  return loop.build_model(config, train_config, tf.distribute.get_strategy())


@pytest.mark.parametrize("kind", ["image", "text"])
@pytest.mark.parametrize("precision", ["bfloat16", "float16"])
def test_mixed_precision_keeps_variables_logits_and_ema_in_float32(kind, precision):
  config = tiny_config(kind, shape=(4, 4, 1) if kind == "image" else (16, 1))
  reference = _model(config, "float32")
  model = _model(config, precision)
  # The global policy is back to float32 once the model is built.
  assert tf.keras.mixed_precision.global_policy().name == "float32"
  assert all(v.dtype == tf.float32 for v in model.network.weights + model.ema_network.weights)
  assert model.network.compute_dtype == COMPUTE[precision]
  assert model.ema_network.compute_dtype == tf.float32
  # Same seed, same initial weights: the precisions differ only in arithmetic.
  for a, b in zip(model.network.weights, reference.network.weights):
    np.testing.assert_array_equal(a.numpy(), b.numpy())
  x = tf.random.stateless_uniform([8, *config.shape], [0, 1], 0, config.num_classes, tf.int32)
  t = tf.random.stateless_uniform([8], [0, 2], 0, config.total_steps, tf.int32)
  known = tf.cast(tf.random.stateless_uniform(x.shape, [0, 3]) < 0.5, tf.int32)
  logits = model.train_denoiser.logits(x, t, known)
  assert logits.dtype == tf.float32
  want = reference.train_denoiser.logits(x, t, known)
  # bfloat16 keeps 8 significant bits, float16 11: the logits agree to that.
  tolerance = {"bfloat16": 0.1, "float16": 0.02}[precision]
  assert np.max(np.abs(logits.numpy() - want.numpy())) < tolerance * (1 + np.max(np.abs(want)))
  if precision == "float16":
    assert isinstance(model.optimizer, tf.keras.mixed_precision.LossScaleOptimizer)
  else:
    assert not isinstance(model.optimizer, tf.keras.mixed_precision.LossScaleOptimizer)


@pytest.mark.parametrize("precision", ["bfloat16", "float16"])
def test_mixed_precision_steps_follow_float32(precision):
  """A few steps on one batch: the loss falls in step with float32's.

  In float16 the dynamic loss scale (from 2^15) halves at each step whose
  gradients overflow and skips it; overflowing arithmetic (a float16
  GroupNorm) drove it to 1 and training stalled.
  """
  config = tiny_config()
  x = tf.random.stateless_uniform([8, 4, 4, 1], [1, 1], 0, 5, tf.int32)
  ds = tf.data.Dataset.from_tensors(x).repeat()
  losses = {}
  for p in ("float32", precision):
    model = _model(config, p)  # XLA's bfloat16 step: benchmarks/gpu_check.py.
    history = model.fit(ds, steps_per_epoch=12, epochs=2, verbose=0)
    losses[p] = history.history["loss"]
    assert np.isfinite(losses[p]).all()
    if p == "float16":  # At most a few skipped steps.
      assert float(model.optimizer.loss_scale) >= 2**12
  assert losses[precision][1] < losses[precision][0]
  np.testing.assert_allclose(losses[precision], losses["float32"], rtol=0.05)


def test_unknown_precision_is_refused():
  with pytest.raises(UserError, match="unknown precision 'int8'; choose one of float32, "
                     "bfloat16, float16"):
    TrainConfig(precision="int8")
  with pytest.raises(ValueError, match="unknown precision"):
    with precision_lib.scope("float64"):
      pass
  assert tf.keras.mixed_precision.global_policy().name == "float32"
