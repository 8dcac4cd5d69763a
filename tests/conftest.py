"""Shared test fixtures: small models and a zero-logit network."""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import pytest  # pylint: disable=g-import-not-at-top,wrong-import-position
import tensorflow as tf  # pylint: disable=g-import-not-at-top,wrong-import-position

from tf_ardm.config import ModelConfig  # pylint: disable=g-import-not-at-top,wrong-import-position


REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class ConstantLogits(tf.keras.layers.Layer):
  """A network whose logits are a fixed vector [K] at every position."""

  def __init__(self, logits, **kwargs):
    super().__init__(**kwargs)
    self.value = tf.constant(logits, tf.float32)

  def call(self, x_in, t, mask, training=False):
    del t, mask
    shape = tf.concat([tf.shape(x_in), tf.shape(self.value)], 0)
    return tf.broadcast_to(self.value, shape)


class CountingLogits(tf.keras.layers.Layer):
  """Predicts (number of known positions) mod K everywhere, deterministically."""

  def __init__(self, num_classes, **kwargs):
    super().__init__(**kwargs)
    self.k = num_classes

  def call(self, x_in, t, mask, training=False):
    known = tf.reduce_sum(mask, axis=[1, 2, 3])
    target = tf.cast(known, tf.int32) % self.k
    onehot = tf.one_hot(target, self.k) * 50.0
    return tf.broadcast_to(onehot[:, None, None, None, :],
                           tf.concat([tf.shape(x_in), [self.k]], 0))


def tiny_config(kind="image", shape=(4, 4, 1), num_classes=5):
  if kind == "image":
    return ModelConfig("digits", "image", list(shape), num_classes, "unet",
                       dict(channels=16, num_res_blocks=1), 0.001)
  return ModelConfig("text", "text", list(shape), num_classes, "transformer",
                     dict(num_layers=1, dim=16, num_heads=2, mlp_dim=32), 0.0001)


@pytest.fixture
def image_config():
  return tiny_config()
