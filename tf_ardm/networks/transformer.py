"""The non-causal text Transformer (spec §7.3).

Pre-LayerNorm encoder blocks with bias-free q/k/v/out projections, tanh-GELU
MLPs and fixed sinusoidal positions. It sees neither t nor the mask: the
absorbing token (id K, so the input vocabulary is K+1) carries that. Under
mixed precision only the matmuls (projections, MLP, attention products)
compute in bfloat16 or float16; the residual stream, LayerNorms, GELU and
the attention bias and softmax stay float32.

`position_bias="alibi"` (not in the reference) adds fixed distance penalties
to the attention logits, so that attention starts local. Small models then
use the known neighbours within a few hundred steps instead of sitting on
the unigram plateau for thousands (measured in configs/text.cfg).
"""
import tensorflow as tf

from tf_ardm.networks import layers


def _layer_norm():
  """LayerNorm, in float32 in every precision (as the U-Net's GroupNorm)."""
  return tf.keras.layers.LayerNormalization(epsilon=1e-6, dtype="float32")


def _dense(units, use_bias=True, dtype=None):
  return tf.keras.layers.Dense(
      units, use_bias=use_bias, kernel_initializer="glorot_uniform",
      bias_initializer=tf.keras.initializers.RandomNormal(stddev=1e-6), dtype=dtype)


class TransformerBlock(tf.keras.layers.Layer):
  """y = x + Attn(LN(x)); out = y + MLP(LN(y))."""

  def __init__(self, dim, num_heads, mlp_dim, dropout, **kwargs):
    super().__init__(**kwargs)
    self.norm1 = _layer_norm()
    self.attention = layers.SelfAttention(
        dim, num_heads, use_bias=False, kernel_initializer="glorot_uniform",
        dropout=dropout)
    self.norm2 = _layer_norm()
    self.mlp_in = _dense(mlp_dim)
    self.mlp_out = _dense(dim)
    self.dropout = tf.keras.layers.Dropout(dropout)

  def call(self, x, bias=None, training=False):
    """x: float32 [B, L, dim], the residual stream, float32 in every precision."""
    h = self.norm1(x)
    attended = self.attention(h, bias=bias, training=training)
    y = x + tf.cast(self.dropout(attended, training=training), x.dtype)
    z = tf.nn.gelu(tf.cast(self.mlp_in(self.norm2(y)), x.dtype), approximate=True)
    z = self.mlp_out(self.dropout(z, training=training))
    return y + tf.cast(self.dropout(z, training=training), x.dtype)


class Transformer(tf.keras.layers.Layer):
  """(x_in int32 [B,L,1], t, mask) -> logits float32 [B,L,1,K]; t, mask unused."""

  def __init__(self, seq_len, num_classes_in, num_classes_out, num_layers=12,
               dim=768, num_heads=12, mlp_dim=3072, dropout=0.0,
               position_bias="none", **kwargs):
    super().__init__(**kwargs)
    if position_bias not in ("none", "alibi"):
      raise ValueError(f"unknown position_bias {position_bias!r}")
    self.bias = (layers.alibi_bias(seq_len, num_heads)
                 if position_bias == "alibi" else None)
    self.embed = tf.keras.layers.Embedding(  # The float32 residual stream.
        num_classes_in, dim,
        embeddings_initializer=tf.keras.initializers.RandomNormal(stddev=1.0),
        dtype="float32")
    self.positions = layers.sinusoid(tf.range(seq_len), dim)
    self.blocks = [TransformerBlock(dim, num_heads, mlp_dim, dropout)
                   for _ in range(num_layers)]
    self.norm = _layer_norm()
    self.logits = _dense(num_classes_out, dtype="float32")  # In every precision.

  def call(self, x_in, t, mask, training=False):
    del t, mask  # The absorbing token marks the unknown positions.
    h = self.embed(x_in[..., 0])
    h = h + tf.cast(self.positions, h.dtype)
    for block in self.blocks:
      h = block(h, bias=self.bias, training=training)
    return self.logits(self.norm(h))[:, :, None, :]
