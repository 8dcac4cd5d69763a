"""Shared building blocks with the reference's initialisers (spec §7)."""
import math

import tensorflow as tf


def lecun_normal():
  """Flax's default kernel init: truncated normal, variance 1/fan_in."""
  return tf.keras.initializers.LecunNormal()


def embedding_init(features):
  """Flax's nn.Embed default: N(0, 1/features), untruncated."""
  return tf.keras.initializers.RandomNormal(stddev=math.sqrt(1.0 / features))


def sinusoid(positions, dim):
  """Sinusoidal features [sin(p w), cos(p w)] (sines first), [..., dim].

  w_i = exp(-i ln(10000) / (dim/2 - 1)), i = 0 .. dim/2 - 1 (spec §7.1, §7.3).
  """
  half = dim // 2
  freqs = tf.exp(-tf.range(half, dtype=tf.float32) *
                 (math.log(10000.0) / (half - 1)))
  angles = tf.cast(positions, tf.float32)[..., None] * freqs
  return tf.concat([tf.sin(angles), tf.cos(angles)], axis=-1)


def group_norm(channels):
  """GroupNorm with up to 32 groups (a divisor of `channels`), eps 1e-6."""
  groups = math.gcd(32, channels)
  return tf.keras.layers.GroupNormalization(groups=groups, epsilon=1e-6)
