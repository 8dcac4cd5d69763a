"""CRC-32 (zlib's, IEEE 802.3) of byte rows in TF ops, without a byte loop.

CRC-32 is affine over GF(2): crc(A || B) = Z^|B| crc(A) xor crc(B), where Z
is the linear map of feeding one zero byte into the register (zlib's
crc32_combine), and the empty message has crc 0. So `crc32` looks up the CRC
of every single byte, pads the row in front with empty messages to a power
of two, and combines neighbours pairwise in log2(L) levels; at level t every
right-hand block is 2^t bytes long (padding only ever sits on the left, where
it is 0 and stays 0), so one precomputed map Z^(2^t) serves the level.
Each map is applied as 4 table lookups (one per byte of the register),
the tables being built in-graph from 32 bit images per level.
"""
import zlib

import numpy as np
import tensorflow as tf

_LEVELS = 40  # Rows of up to 2^40 bytes.


def _zero_byte_maps():
  """uint32 [_LEVELS, 32]: Z^(2^t) applied to each bit of the register."""
  poly = np.uint32(0xEDB88320)
  image = np.uint32(1) << np.arange(32, dtype=np.uint32)
  for _ in range(8):  # One zero byte, on the reflected register.
    image = np.where(image & 1, (image >> 1) ^ poly, image >> 1).astype(np.uint32)
  maps = []
  for _ in range(_LEVELS):
    maps.append(image)
    # Square the map: Z^2 e_i = Z (Z e_i), applying Z bit by bit (linearity).
    image = np.array([np.bitwise_xor.reduce(image[(int(v) >> np.arange(32)) & 1 > 0])
                      for v in image], np.uint32)
  return np.array(maps, np.uint32)


_MAPS = _zero_byte_maps()
_SINGLE = np.array([zlib.crc32(bytes([b])) for b in range(256)], np.uint32)


def _byte_tables():
  """uint32 [_LEVELS, 4, 256]: byte j of the register with value b -> its image."""
  maps = tf.reshape(tf.constant(_MAPS), [_LEVELS, 4, 1, 8])
  bits = tf.bitwise.bitwise_and(tf.bitwise.right_shift(tf.range(256)[:, None],
                                                       tf.range(8)), 1) > 0
  tables = tf.zeros([_LEVELS, 4, 256], tf.uint32)
  for i in range(8):
    tables = tf.bitwise.bitwise_xor(tables, tf.where(bits[:, i], maps[..., i], 0))
  return tables


def crc32(data):
  """zlib.crc32 of each row of `data` uint8 [B, L] (L may be dynamic): uint32 [B]."""
  tables = _byte_tables()
  crcs = tf.gather(tf.constant(_SINGLE), tf.cast(data, tf.int32))
  length = tf.shape(crcs)[1]
  # ceil(log2 L): the number of powers of two below L.
  levels = tf.reduce_sum(tf.cast(
      tf.bitwise.left_shift(tf.constant(1, tf.int64), tf.range(_LEVELS, dtype=tf.int64))
      < tf.cast(length, tf.int64), tf.int32))
  pad = tf.bitwise.left_shift(1, levels) - length
  crcs = tf.concat([tf.zeros([tf.shape(crcs)[0], pad], tf.uint32), crcs], 1)

  def combine(t, crcs):
    pairs = tf.reshape(crcs, [tf.shape(crcs)[0], -1, 2])
    left, right = pairs[..., 0], pairs[..., 1]
    shifted = right
    for j in range(4):
      byte = tf.cast(tf.bitwise.bitwise_and(tf.bitwise.right_shift(left, 8 * j), 0xFF),
                     tf.int32)
      shifted = tf.bitwise.bitwise_xor(shifted, tf.gather(tables[t, j], byte))
    return t + 1, shifted

  _, crcs = tf.while_loop(lambda t, _: t < levels, combine, (0, crcs),
                          shape_invariants=(tf.TensorShape([]),
                                            tf.TensorShape([None, None])))
  return tf.reshape(crcs, [-1])
