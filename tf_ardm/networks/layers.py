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
  """GroupNorm with up to 32 groups (a divisor of `channels`), eps 1e-6.

  It computes in float32 in every precision: in float16, 1e-6 is subnormal
  and the gradient of rsqrt(variance + eps) at a zero variance (the U-Net's
  zero-initialised convolutions) overflows.
  """
  groups = math.gcd(32, channels)
  return tf.keras.layers.GroupNormalization(groups=groups, epsilon=1e-6, dtype="float32")


def alibi_bias(length, num_heads):
  """Symmetric linear distance penalties -m_h |i - j|, float32 [H, N, N].

  m_h = 2^(-8 (h + 1) / H) (Press et al. 2022, ALiBi, without the causal
  mask): from the start some heads attend locally and some globally.
  """
  slopes = 2.0 ** (-8.0 * tf.range(1, num_heads + 1, dtype=tf.float32) / num_heads)
  p = tf.range(length, dtype=tf.float32)
  return -slopes[:, None, None] * tf.abs(p[:, None] - p[None, :])


class SelfAttention(tf.keras.layers.Layer):
  """Multi-head self-attention over the positions of x [B, N, C] -> [B, N, C].

  q, k and v are separate Dense(C) projections, so that a fan-based kernel
  initialiser sees fan_in = fan_out = C as in the reference; the output
  projection has its own initialiser (zeros in the U-Net).
  """

  def __init__(self, channels, num_heads, use_bias=True, kernel_initializer=None,
               output_initializer=None, dropout=0.0, **kwargs):
    super().__init__(**kwargs)
    self.num_heads, self.head_dim = num_heads, channels // num_heads
    dense = lambda init: tf.keras.layers.Dense(
        channels, use_bias=use_bias, kernel_initializer=init or lecun_normal())
    self.q, self.k, self.v = dense(kernel_initializer), dense(kernel_initializer), dense(
        kernel_initializer)
    self.out = dense(output_initializer or kernel_initializer)
    self.dropout = tf.keras.layers.Dropout(dropout)

  def call(self, x, bias=None, training=False):
    """bias: optional float32 [H, N, N] added to the attention logits."""
    shape = tf.shape(x)
    split = lambda h: tf.reshape(h, [shape[0], shape[1], self.num_heads, self.head_dim])
    q, k, v = split(self.q(x)), split(self.k(x)), split(self.v(x))
    logits = tf.einsum("bqhd,bkhd->bhqk", q, k) * self.head_dim**-0.5
    weights = tf.nn.softmax(logits if bias is None else logits + tf.cast(bias, logits.dtype))
    weights = self.dropout(weights, training=training)
    h = tf.einsum("bhqk,bkhd->bqhd", weights, v)
    return self.out(tf.reshape(h, shape))
