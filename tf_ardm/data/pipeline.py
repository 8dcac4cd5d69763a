"""tf.data pipelines over in-memory int32 datasets."""
import tensorflow as tf


def _augment_image(x, seed):
  """Random horizontal flip (p = 0.5), then a random k*90 degree rotation.

  x: [H, W, C] with H = W; seed: int [2]. Each of the 8 symmetries of the
  square is equally likely, a function of `seed`.
  """
  seeds = tf.random.experimental.stateless_split(seed, 2)
  flip = tf.random.stateless_uniform([], seeds[0]) < 0.5
  x = tf.cond(flip, lambda: tf.reverse(x, axis=[1]), lambda: x)
  k = tf.random.stateless_uniform([], seeds[1], 0, 4, dtype=tf.int32)
  return tf.image.rot90(x, k)


def _text_crops(chunks, seed, skip=0, pad=None, pad_fraction=0.0):
  """Random seq_len crops of 4*seq_len blocks (spec §9.2).

  chunks: int [N, seq_len, 1], a token stream cut in chunks. The stream
  (its remainder beyond whole blocks dropped) is cut in blocks of 4*seq_len
  tokens; every pass takes each block once, in a shuffled order, and crops
  seq_len tokens at a uniform offset in [0, 3*seq_len]. With `pad` (a class
  id), a fraction `pad_fraction` of the crops keep only their first L tokens,
  L uniform in [1, seq_len - 1], and hold `pad` after them: a short record's
  chunk, as the codec pads it. Returns the infinite dataset of crops
  [seq_len, 1], a function of `seed`, without its first `skip` crops
  (skipped before cropping, so at no cost).
  """
  seq_len = chunks.shape[1]
  stream = chunks.reshape(-1)
  block = 4 * seq_len
  blocks = stream[:len(stream) // block * block].reshape(-1, block)
  ds = tf.data.Dataset.from_tensor_slices(blocks)
  ds = ds.shuffle(len(blocks), seed=seed, reshuffle_each_iteration=True).repeat()
  def crop(b, index):
    start = tf.random.stateless_uniform([], [seed, index], 0, block - seq_len + 1,
                                        dtype=tf.int64)
    x = b[start:start + seq_len]
    if pad is not None:
      seeds = tf.random.experimental.stateless_split([seed, index], 2)
      short = tf.random.stateless_uniform([], seeds[0]) < pad_fraction
      length = tf.random.stateless_uniform([], seeds[1], 1, seq_len, dtype=tf.int64)
      keep = tf.logical_or(tf.logical_not(short), tf.range(seq_len, dtype=tf.int64) < length)
      x = tf.where(keep, x, tf.cast(pad, x.dtype))
    return x[:, None]
  return ds.enumerate().skip(skip).map(lambda i, b: crop(b, i),
                                       num_parallel_calls=tf.data.AUTOTUNE)


def train_dataset(data, batch_size, seed=0, augment=False, start_step=0):
  """Infinite shuffled batches int32 [batch_size, *shape], prefetched.

  The sequence of batches is a function of (data, batch_size, seed,
  augment); `start_step` skips its first batches, so that a run resumed at
  optimizer step s sees the batches s, s + 1, ... of an uninterrupted run.
  """
  x = data.splits["train"]
  skip = start_step * batch_size  # Examples, skipped before any augmentation.
  if data.kind == "text" and len(x) >= 8:
    ds = _text_crops(x, seed, skip, data.pad, data.pad_fraction)
  else:
    ds = tf.data.Dataset.from_tensor_slices(x)
    ds = ds.shuffle(len(x), seed=seed, reshuffle_each_iteration=True).repeat()
    if augment:
      ds = ds.enumerate().skip(skip).map(lambda i, v: _augment_image(v, [seed, i]),
                                         num_parallel_calls=tf.data.AUTOTUNE)
    else:
      ds = ds.skip(skip)
  ds = ds.batch(batch_size, drop_remainder=True)
  return ds.map(lambda v: tf.cast(v, tf.int32)).prefetch(tf.data.AUTOTUNE)


def eval_dataset(x, batch_size):
  """One in-order pass over x (remainder kept), prefetched."""
  ds = tf.data.Dataset.from_tensor_slices(x).batch(batch_size)
  return ds.map(lambda v: tf.cast(v, tf.int32)).prefetch(tf.data.AUTOTUNE)
