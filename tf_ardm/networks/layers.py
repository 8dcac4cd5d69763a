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
  return GroupNorm(math.gcd(32, channels), epsilon=1e-6, dtype="float32")


def _group_mean(per_channel, groups):
  """[B, 1, C] per-channel means -> the mean of each channel's group, [B, 1, C]."""
  batch, channels = tf.shape(per_channel)[0], per_channel.shape[-1]
  size = channels // groups
  means = tf.reduce_mean(tf.reshape(per_channel, [batch, groups, size]), -1, keepdims=True)
  return tf.reshape(tf.broadcast_to(means, [batch, groups, size]), [batch, 1, channels])


@tf.custom_gradient
def _group_norm(x, gamma, beta, groups, epsilon):
  """(x - mean) / sqrt(var + eps) * gamma + beta over each example's groups.

  x: float [B, ..., C], C a multiple of `groups`; gamma, beta: [C]. The
  statistics are means over the spatial axes (one contiguous reduction)
  and then over each group's C / groups channel means; the gradient is the
  closed form dx = rstd (g - mean(g) - xhat mean(g xhat)), g = dy gamma,
  with the group means taken the same way. Together they cost about half
  of what tf.keras.layers.GroupNormalization and its autodiff gradient do
  (one CPU core, [64, 8, 8, 64]).
  """
  shape = tf.shape(x)
  flat = tf.reshape(x, [shape[0], -1, x.shape[-1]])
  mean = _group_mean(tf.reduce_mean(flat, 1, keepdims=True), groups)
  centred = flat - mean
  rstd = tf.math.rsqrt(
      _group_mean(tf.reduce_mean(tf.square(centred), 1, keepdims=True), groups) + epsilon)
  scale = rstd * gamma
  y = tf.reshape(flat * scale + (beta - mean * scale), shape)

  def grad(dy):
    dy = tf.reshape(dy, tf.shape(flat))
    xhat = centred * rstd
    g = dy * gamma
    dx = rstd * (g - _group_mean(tf.reduce_mean(g, 1, keepdims=True), groups) -
                 xhat * _group_mean(tf.reduce_mean(g * xhat, 1, keepdims=True), groups))
    return (tf.reshape(dx, shape), tf.reduce_sum(dy * xhat, [0, 1]),
            tf.reduce_sum(dy, [0, 1]), None, None)

  return y, grad


class GroupNorm(tf.keras.layers.Layer):
  """Group normalisation of x [B, ..., C] over the spatial axes and each
  group of C / groups channels, with per-channel `gamma` and `beta` [C].

  The same variables (gamma, then beta) and forward formula as
  tf.keras.layers.GroupNormalization(groups, epsilon), so checkpoints and
  the integer network (tf_ardm.networks.integer) read it the same way; the
  statistics and the gradient are computed as in `_group_norm`.
  """

  def __init__(self, groups, epsilon=1e-6, **kwargs):
    super().__init__(**kwargs)
    self.groups, self.epsilon = int(groups), float(epsilon)

  def build(self, input_shape):
    channels = int(input_shape[-1])
    if channels % self.groups:
      raise ValueError(f"{channels} channels do not split into {self.groups} groups")
    self.gamma = self.add_weight(name="gamma", shape=[channels], initializer="ones")
    self.beta = self.add_weight(name="beta", shape=[channels], initializer="zeros")
    super().build(input_shape)

  def call(self, x):
    return _group_norm(x, tf.convert_to_tensor(self.gamma), tf.convert_to_tensor(self.beta),
                       self.groups, self.epsilon)

  def get_config(self):
    return dict(super().get_config(), groups=self.groups, epsilon=self.epsilon)


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
    """bias: optional float32 [H, N, N] added to the attention logits.

    The output has the layer's compute dtype (bfloat16 under mixed precision).
    """
    shape = tf.shape(x)
    split = lambda h: tf.reshape(h, [shape[0], shape[1], self.num_heads, self.head_dim])
    q, k, v = split(self.q(x)), split(self.k(x)), split(self.v(x))
    # Scaled before the product: [B, N, C] multiplies instead of [B, H, N, N].
    q *= tf.cast(self.head_dim**-0.5, q.dtype)
    # The bias and softmax in float32 in every precision: in bfloat16 a
    # logit near the ALiBi penalty's -m (N - 1) would keep ~8 bits, and a
    # CPU computes bfloat16 elementwise ops by conversion, slower than float32.
    logits = tf.cast(tf.einsum("bqhd,bkhd->bhqk", q, k), tf.float32)
    weights = tf.nn.softmax(logits if bias is None else logits + bias)
    weights = self.dropout(weights, training=training)
    h = tf.einsum("bhqk,bkhd->bqhd", tf.cast(weights, v.dtype), v)
    return self.out(tf.reshape(h, shape))
