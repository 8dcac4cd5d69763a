"""LEB128 varints: unsigned integers in 7-bit groups, least significant first.

Every byte but the last has its high bit set; 0 is one byte 0x00, 300 is
b"\\xac\\x02". The stream header (`tf_ardm.coding.stream`) and the .ardm
container (`tf_ardm.coding.container`) write their integers this way.
`encode`/`decode` work on Python ints and bytes, `tf_encode`/`tf_decode` on
int64 tensors inside graphs; both give the same bytes.
"""
import tensorflow as tf


def encode(value):
  """The varint bytes of an int value >= 0."""
  out = bytearray()
  while True:
    byte, value = value & 0x7F, value >> 7
    out.append(byte | (0x80 if value else 0))
    if not value:
      return bytes(out)


def decode(data, pos, max_bytes):
  """(value, end) of the varint that starts at data[pos] (bytes).

  Raises EOFError when `data` ends inside it and ValueError when it runs
  longer than `max_bytes` bytes.
  """
  value = 0
  for i in range(max_bytes):
    if pos + i >= len(data):
      raise EOFError("the data end inside a varint")
    byte = data[pos + i]
    value |= (byte & 0x7F) << (7 * i)
    if byte < 0x80:
      return value, pos + i + 1
  raise ValueError(f"a varint longer than {max_bytes} bytes")


def tf_encode(values, max_bytes):
  """Varints of int64 values [S] in [0, 2^(7 max_bytes)).

  Returns:
    (bytes int64 [S, max_bytes] with values in [0, 256), size int32 [S]):
    varint s is bytes[s, :size[s]]; the bytes after it are 0.
  """
  shifts = 7 * tf.range(max_bytes, dtype=tf.int64)
  groups = tf.bitwise.bitwise_and(tf.bitwise.right_shift(values[:, None], shifts), 0x7F)
  more = tf.bitwise.right_shift(values[:, None], shifts + 7) > 0
  size = 1 + tf.reduce_sum(tf.cast(more[:, :-1], tf.int32), 1)
  return tf.where(more, groups + 0x80, groups), size


def tf_decode(raw, max_bytes):
  """Reads a varint at the start of each row of raw int64 [S, max_bytes] (byte values).

  Returns:
    (value int64 [S], size int32 [S], ok bool [S]): ok is False where the
    varint would run past the max_bytes bytes.
  """
  more = raw >= 0x80
  continued = tf.math.cumprod(tf.cast(more, tf.int32), axis=1)
  size = 1 + tf.reduce_sum(continued[:, :-1], 1)
  used = tf.range(max_bytes)[None] < size[:, None]
  shifts = 7 * tf.range(max_bytes, dtype=tf.int64)
  value = tf.reduce_sum(tf.where(used, tf.bitwise.left_shift(
      tf.bitwise.bitwise_and(raw, 0x7F), shifts), 0), 1)
  return value, size, ~more[:, -1] | (size < max_bytes)
