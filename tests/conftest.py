"""Shared test fixtures: small models and networks with known logits.

The fixed-logit networks also have an exact integer version (their
`integer_network()`), which the codec uses as is (tf_ardm.networks.integer).
"""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

# pylint: disable=g-import-not-at-top,wrong-import-position
import tf_ardm  # noqa: F401  Before TensorFlow: it sets TF_USE_LEGACY_KERAS (tf_ardm/__init__.py).
import numpy as np
import pytest
import tensorflow as tf

from tf_ardm.config import ModelConfig
from tf_ardm.networks import fixed_point
from tf_ardm.networks import integer
# pylint: enable=g-import-not-at-top,wrong-import-position


REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Fixed-point scale of integer logits: value * 2^TABLE_EXPONENT.
LOGIT_SCALE = 2**fixed_point.TABLE_EXPONENT


def integer_logits(values):
  """round(values * 2^10), half up, as int64 numpy: float logits at TABLE_EXPONENT."""
  return np.floor(np.asarray(values, np.float64) * LOGIT_SCALE + 0.5).astype(np.int64)


class ConstantLogits(tf.keras.layers.Layer):
  """A network whose logits are a fixed vector [K] at every position."""

  def __init__(self, logits, **kwargs):
    super().__init__(**kwargs)
    self.value = tf.constant(logits, tf.float32)

  def call(self, x_in, t, mask, training=False):
    del t, mask
    shape = tf.concat([tf.shape(x_in), tf.shape(self.value)], 0)
    return tf.broadcast_to(self.value, shape)

  def integer_network(self):
    return IntegerConstantLogits(self.value.numpy())


class IntegerConstantLogits(integer.IntegerNetwork):
  """ConstantLogits in integer arithmetic: int64 [B, *shape, K] at TABLE_EXPONENT."""

  def __init__(self, logits, name=None):
    super().__init__(name=name)
    self.values = integer_logits(logits)  # int64 [K]
    self.constant(self.values)  # Stored now; looked up in every call.

  def __call__(self, x_in, t, mask, direct_conv=True):
    del t, mask
    self.calibrated = True
    return tf.broadcast_to(self.constant(self.values),
                           tf.concat([tf.shape(x_in), [len(self.values)]], 0))

  def arrays(self):
    return [np.frombuffer(b"constant", np.uint8), self.values]


class CountingLogits(tf.keras.layers.Layer):
  """Predicts (number of known positions) mod K everywhere, deterministically."""

  # The logit of the predicted class; all others are 0.
  PEAK = 50.0

  def __init__(self, num_classes, **kwargs):
    super().__init__(**kwargs)
    self.k = num_classes

  def call(self, x_in, t, mask, training=False):
    known = tf.reduce_sum(mask, axis=[1, 2, 3])
    target = tf.cast(known, tf.int32) % self.k
    onehot = tf.one_hot(target, self.k) * self.PEAK
    return tf.broadcast_to(onehot[:, None, None, None, :],
                           tf.concat([tf.shape(x_in), [self.k]], 0))

  def integer_network(self):
    return IntegerCountingLogits(self.k, self.PEAK)


class IntegerCountingLogits(integer.IntegerNetwork):
  """CountingLogits in integer arithmetic: the count comes from the integer mask
  (int32 [B, H, W, C], as the codec passes it); logits int64 [B, *shape, K]
  at TABLE_EXPONENT."""

  def __init__(self, num_classes, peak, name=None):
    super().__init__(name=name)
    self.k = int(num_classes)
    self.peak = int(integer_logits(peak))

  def __call__(self, x_in, t, mask, direct_conv=True):
    del t
    known = tf.reduce_sum(tf.cast(mask, tf.int64), axis=[1, 2, 3])
    target = tf.math.floormod(known, self.k)
    hit = tf.equal(tf.range(self.k, dtype=tf.int64)[None, :], target[:, None])
    onehot = tf.where(hit, tf.constant(self.peak, tf.int64), tf.constant(0, tf.int64))
    self.calibrated = True
    return tf.broadcast_to(onehot[:, None, None, None, :],
                           tf.concat([tf.shape(x_in), [self.k]], 0))

  def arrays(self):
    return [np.frombuffer(b"counting", np.uint8), np.array([self.k, self.peak], np.int64)]


def tiny_config(kind="image", shape=(4, 4, 1), num_classes=5):
  if kind == "image":
    return ModelConfig("digits", "image", list(shape), num_classes, "unet",
                       dict(channels=16, num_res_blocks=1), 0.001)
  return ModelConfig("text", "text", list(shape), num_classes, "transformer",
                     dict(num_layers=1, dim=16, num_heads=2, mlp_dim=32), 0.0001)


@pytest.fixture
def image_config():
  return tiny_config()
