"""The ARDM stream format: a header, then the range-coded payload.

  bytes  field
  2      magic b"\\x8eA"
  1      format version (1)
  4      model fingerprint (see codec.fingerprint)
  1-5    budget k, the network calls per datapoint and stage (LEB128 varint)
  1-5    count N, the number of datapoints in the stream (varint)
  2      header check: the low 16 bits of CRC-32 over magic, version,
         fingerprint, budget (uint32) and count (uint32); it catches a
         corrupted budget or count before any decoding work
  4      CRC-32 (zlib) of the N datapoints' values, row-major, one byte per
         value (two, big-endian, when K > 256)
  rest   payload

Integers are big-endian. Each datapoint has the model's data shape, which
the fingerprint covers; the stream's data shape is [N, *shape]. `build` and
`parse` work in TF ops on string tensors [S]; `read_header` parses one
stream's header in Python.
"""
import collections

import tensorflow as tf

from tf_ardm.coding import crc
from tf_ardm.coding import varint
from tf_ardm.errors import UserError

MAGIC = b"\x8eA"
VERSION = 1
FINGERPRINT_BYTES = 4
MAX_VARINT = 5
MAX_HEADER = 3 + FINGERPRINT_BYTES + 2 * MAX_VARINT + 2 + 4

Header = collections.namedtuple("Header", "budget count size")

FOREIGN = ("the stream was made with a different model or coding settings "
           "(model fingerprint mismatch)")

_BYTES = [bytes([b]) for b in range(256)]


def _strings(values):
  """int [..., m] byte values -> string [...] of m bytes."""
  return tf.strings.reduce_join(tf.gather(_BYTES, tf.cast(values, tf.int32)), -1)


def _be32(values):
  """int64 [S] -> uint8-valued int64 [S, 4], big-endian."""
  shifts = tf.constant([24, 16, 8, 0], tf.int64)
  return tf.bitwise.bitwise_and(tf.bitwise.right_shift(values[:, None], shifts), 0xFF)


def _varint(values):
  """int64 [S] in [0, 2^35) -> LEB128 strings [S]."""
  raw, size = varint.tf_encode(values, MAX_VARINT)
  return tf.strings.substr(_strings(raw), tf.zeros_like(size), size)


def _check(prefix, budget, count):
  """The header check int64 [S] of a prefix (bytes) and budget, count [S]."""
  head = tf.tile(tf.constant([list(prefix)], tf.int64), [tf.shape(count)[0], 1])
  message = tf.concat([head, _be32(budget), _be32(count)], 1)
  return tf.bitwise.bitwise_and(tf.cast(crc.crc32(message), tf.int64), 0xFFFF)


def build(fingerprint, budget, count, data_crc, payload):
  """Streams string [S] from a budget, counts, data CRCs (int64 [S]) and payloads [S]."""
  prefix = MAGIC + bytes([VERSION]) + fingerprint
  budget = tf.fill(tf.shape(count), tf.cast(budget, tf.int64))
  check = _check(prefix, budget, count)
  return tf.strings.join([
      prefix, _varint(budget), _varint(count),
      _strings(_be32(check)[:, 2:]), _strings(_be32(data_crc)), payload])


def _bytes_at(padded, pos, size):
  """The `size` bytes at pos int32 [S] of each string, int64 [S, size]."""
  raw = tf.strings.substr(padded, pos, tf.ones_like(pos) * size)
  return tf.cast(tf.io.decode_raw(raw, tf.uint8), tf.int64)


def _read_varint(padded, pos):
  """(value int64 [S], end int32 [S], ok bool [S]) of the varint at pos."""
  value, size, ok = varint.tf_decode(_bytes_at(padded, pos, MAX_VARINT), MAX_VARINT)
  return value, pos + size, ok


def _be_int(padded, pos, size):
  """The big-endian unsigned integer of `size` bytes at pos, int64 [S]."""
  raw = _bytes_at(padded, pos, size)
  shifts = tf.constant([8 * (size - 1 - i) for i in range(size)], tf.int64)
  return tf.reduce_sum(tf.bitwise.left_shift(raw, shifts), 1)


def assert_all(ok, message, *data):
  """Raises InvalidArgumentError(message, first failing stream) unless all ok."""
  first = tf.cast(tf.argmin(tf.cast(ok, tf.int32)), tf.int32)
  return tf.debugging.Assert(
      tf.reduce_all(ok),
      [message] + [tf.gather(d, first) for d in data] + ["(stream", first, "of the batch)"],
      summarize=16)


def parse(streams, fingerprint, max_budget):
  """Checks and splits streams string [S].

  Raises InvalidArgumentError (bad magic, version, fingerprint, truncated or
  corrupt header, budget outside [1, max_budget]) before any decoding work.

  Returns:
    dict of int64 [S] 'budget', 'count', 'crc' and string [S] 'payload'.
  """
  length = tf.strings.length(streams)
  padded = tf.strings.join([streams, b"\0" * MAX_HEADER])
  checks = [assert_all(tf.strings.substr(padded, 0, 2) == MAGIC,
                        "not an ARDM stream (bad magic bytes)")]
  version = _be_int(padded, tf.fill(tf.shape(length), 2), 1)
  with tf.control_dependencies(checks):
    checks.append(assert_all(
        version == VERSION,
        f"unsupported ARDM stream format version (this codec reads version "
        f"{VERSION}); version:", version))
  with tf.control_dependencies(checks):
    checks.append(assert_all(
        tf.strings.substr(padded, 3, FINGERPRINT_BYTES) == fingerprint, FOREIGN))
  budget, pos, budget_ok = _read_varint(padded, tf.fill(tf.shape(length), 7))
  count, pos, count_ok = _read_varint(padded, pos)
  check = _be_int(padded, pos, 2)
  data_crc = _be_int(padded, pos + 2, 4)
  end = pos + 6
  with tf.control_dependencies(checks):
    checks.append(assert_all(
        budget_ok & count_ok & (end <= length) & (count < 2**32),
        "truncated or corrupt stream header"))
  with tf.control_dependencies(checks):
    prefix = MAGIC + bytes([VERSION]) + fingerprint
    checks.append(assert_all(
        tf.equal(check, _check(prefix, budget, count)),
        "corrupt stream header (header check mismatch)"))
  with tf.control_dependencies(checks):
    checks.append(assert_all(
        (budget >= 1) & (budget <= max_budget),
        f"corrupt stream header: the budget must lie in [1, {max_budget}]; budget:",
        budget))
  with tf.control_dependencies(checks):
    payload = tf.strings.substr(streams, tf.minimum(end, length),
                                tf.maximum(length - end, 0))
  return {"budget": budget, "count": count, "crc": data_crc, "payload": payload}


def read_header(data, fingerprint):
  """Parses the header of one stream (bytes) in Python.

  Returns a Header; raises UserError when it is not an ARDM stream header or
  comes from another model than the one with `fingerprint`. The header
  check, budget range and CRC are left to `parse` and the decoder.
  """
  if data[:2] != MAGIC:
    raise UserError("not an ARDM stream (bad magic bytes)")
  if len(data) < 3 or data[2] != VERSION:
    raise UserError(f"unsupported ARDM stream format version (this codec reads "
                    f"version {VERSION})")
  if data[3:3 + FINGERPRINT_BYTES] != fingerprint:
    raise UserError(FOREIGN)
  pos = 3 + FINGERPRINT_BYTES
  fields = []
  for _ in range(2):
    try:
      value, pos = varint.decode(data, pos, MAX_VARINT)
    except (EOFError, ValueError):
      raise UserError("truncated or corrupt stream header") from None
    fields.append(value)
  if len(data) < pos + 6:
    raise UserError("truncated or corrupt stream header")
  return Header(fields[0], fields[1], pos + 6)
