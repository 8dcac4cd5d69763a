"""The image network (spec §7.1-7.2): input processing, time embedding and a
single-resolution U-Net of ResBlocks with middle self-attention."""
import tensorflow as tf

from tf_ardm.networks import layers


class TimeEmbedding(tf.keras.layers.Layer):
  """t [B] -> [B, 4*dim]: sinusoid of t*1000/max_time, Dense, swish, Dense."""

  def __init__(self, dim, max_time, **kwargs):
    super().__init__(**kwargs)
    self.dim, self.max_time = dim, max_time
    self.dense1 = tf.keras.layers.Dense(4 * dim, kernel_initializer=layers.lecun_normal())
    self.dense2 = tf.keras.layers.Dense(4 * dim, kernel_initializer=layers.lecun_normal())

  def call(self, t):
    scaled = tf.cast(t, tf.float32) * (1000.0 / self.max_time)
    h = layers.sinusoid(scaled, self.dim)
    return self.dense2(tf.nn.swish(self.dense1(h)))


class InputProcessing(tf.keras.layers.Layer):
  """x_in [B,H,W,C] int, mask [B,H,W,M] -> features [B,H,W,ch].

  Float path: 2x/K_in - 1 with the mask channels, a 3x3 conv to 3ch/4.
  Embedding path: Embed(K_in, 64) per sub-pixel, flattened, Dense to ch/4.
  """

  def __init__(self, num_classes_in, channels, **kwargs):
    super().__init__(**kwargs)
    self.num_classes_in = num_classes_in
    emb = 64
    self.conv = tf.keras.layers.Conv2D(channels - channels // 4, 3, padding="same",
                                       kernel_initializer=layers.lecun_normal())
    self.embed = tf.keras.layers.Embedding(
        num_classes_in, emb, embeddings_initializer=layers.embedding_init(emb))
    self.dense = tf.keras.layers.Dense(channels // 4, kernel_initializer=layers.lecun_normal())

  def call(self, x_in, mask):
    x_f = 2.0 * tf.cast(x_in, tf.float32) / self.num_classes_in - 1.0
    h_float = self.conv(tf.concat([x_f, tf.cast(mask, tf.float32)], axis=-1))
    e = self.embed(x_in)  # [B,H,W,C,64]
    shape = tf.shape(e)
    e = tf.reshape(e, tf.concat([shape[:3], [e.shape[3] * e.shape[4]]], 0))
    return tf.concat([h_float, self.dense(e)], axis=-1)


class ResBlock(tf.keras.layers.Layer):
  """GN-swish-conv, + Dense(swish(temb)), GN-swish-dropout-conv(zero init)."""

  def __init__(self, channels, dropout, **kwargs):
    super().__init__(**kwargs)
    self.channels = channels
    self.norm1 = layers.group_norm(channels)
    self.norm2 = layers.group_norm(channels)
    self.conv1 = tf.keras.layers.Conv2D(channels, 3, padding="same",
                                        kernel_initializer=layers.lecun_normal())
    self.temb = tf.keras.layers.Dense(channels, kernel_initializer=layers.lecun_normal())
    self.dropout = tf.keras.layers.Dropout(dropout)
    self.conv2 = tf.keras.layers.Conv2D(channels, 3, padding="same",
                                        kernel_initializer="zeros")
    self.shortcut = None

  def build(self, input_shape):
    if input_shape[-1] != self.channels:
      # Made here, after the precision scope: it takes this block's policy.
      self.shortcut = tf.keras.layers.Dense(self.channels, dtype=self.dtype_policy,
                                            kernel_initializer=layers.lecun_normal())
    super().build(input_shape)

  def call(self, x, temb, training=False):
    h = self.conv1(tf.nn.swish(self.norm1(x)))
    h += self.temb(tf.nn.swish(temb))[:, None, None, :]
    h = self.dropout(tf.nn.swish(self.norm2(h)), training=training)
    h = self.conv2(h)
    skip = x if self.shortcut is None else self.shortcut(x)
    return skip + h


class AttentionBlock(tf.keras.layers.Layer):
  """GroupNorm, then self-attention over the H*W positions, added to x.

  The output projection is zero-initialised: the block starts as identity.
  """

  def __init__(self, channels, num_heads=1, **kwargs):
    super().__init__(**kwargs)
    self.norm = layers.group_norm(channels)
    self.attention = layers.SelfAttention(channels, num_heads,
                                          output_initializer="zeros")

  def call(self, x):
    shape = tf.shape(x)
    h = tf.reshape(self.norm(x), [shape[0], shape[1] * shape[2], shape[3]])
    return x + tf.reshape(self.attention(h), shape)


class UNet(tf.keras.layers.Layer):
  """The single-resolution U-Net of spec §7.2 behind §7.1's input processing.

  Call: (x_in int32 [B,H,W,C], t int32 [B], mask float [B,H,W,M]) ->
  logits float32 [B,H,W,C,K], channel-major (output channel c*K + k).
  output_initializer: of the output convolution; None: LeCun normal.
  """

  def __init__(self, data_shape, num_classes_in, num_classes_out, max_time,
               channels=256, num_res_blocks=32, attention_every_block=False,
               num_heads=1, dropout=0.0, output_initializer=None, **kwargs):
    super().__init__(**kwargs)
    self.data_shape = tuple(data_shape)
    self.num_classes_out = num_classes_out
    self.inputs = InputProcessing(num_classes_in, channels)
    self.time = TimeEmbedding(channels, max_time)
    block = lambda: ResBlock(channels, dropout)
    attn = lambda: AttentionBlock(channels, num_heads) if attention_every_block else None
    self.down = [(block(), attn()) for _ in range(num_res_blocks)]
    self.mid = (block(), AttentionBlock(channels, num_heads), block())
    self.up = [(block(), attn()) for _ in range(num_res_blocks + 1)]
    self.out_norm = layers.group_norm(channels)
    self.out_conv = tf.keras.layers.Conv2D(
        self.data_shape[-1] * num_classes_out, 3, padding="same",
        kernel_initializer=output_initializer or layers.lecun_normal(),
        dtype="float32")  # Logits.

  def call(self, x_in, t, mask, training=False):
    temb = self.time(t)
    h = self.inputs(x_in, mask)
    skips = [h]
    for res, att in self.down:
      h = res(h, temb, training=training)
      h = att(h) if att is not None else h
      skips.append(h)
    h = self.mid[0](h, temb, training=training)
    h = self.mid[1](h)
    h = self.mid[2](h, temb, training=training)
    for res, att in self.up:
      h = res(tf.concat([h, skips.pop()], axis=-1), temb, training=training)
      h = att(h) if att is not None else h
    h = self.out_conv(tf.nn.swish(self.out_norm(h)))
    shape = tf.shape(h)
    return tf.reshape(h, tf.concat(
        [shape[:3], [self.data_shape[-1], self.num_classes_out]], 0))
