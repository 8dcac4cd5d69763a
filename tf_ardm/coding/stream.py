"""The ARDM stream format (version 2): a header, then the range-coded payload.

Full framing, a self-describing stream:
  bytes  field
  2      magic b"\\x8eA"
  1      format version (2)
  1      arithmetic id: which arithmetic computed the coding distributions
         (ARITHMETICS names them; this codec writes ARITHMETIC)
  4      model fingerprint (see codec.fingerprint)
  1-5    budget k, the network calls per datapoint and stage (LEB128 varint)
  1-5    count N, the number of datapoints in the stream (varint)
  2      header check: the low 16 bits of CRC-32 over magic, version,
         arithmetic, fingerprint, budget (uint32) and count (uint32)
  4      CRC-32 (zlib) of the N datapoints' values, row-major, one byte per
         value (two, big-endian, when K > 256)
  rest   payload
It is 16 bytes before the payload for a budget and count below 128 (at most
MAX_HEADER). The magic, version and arithmetic id catch a foreign or old
stream, the fingerprint a stream of another model, the header check a
corrupted budget or count before any decoding work, the data CRC anything
else (a corrupted payload, or arithmetic that differs from the encoder's).

Lean framing, for records whose model the caller knows (e.g. a .ardm
container states the arithmetic and fingerprint once):
  1-5    budget (varint)
  1-5    count N (varint)
  4      CRC-32 of the datapoints' values, as above
  rest   payload
It is 6 bytes before the payload for a budget and count below 128 (at most
LEAN_HEADER_MAX). Nothing guards the model identity; a corrupted budget or
count is caught by the range checks of `parse` or, failing those, by the data
CRC in the decoder.

Integers are big-endian. Each datapoint has the model's data shape, which
the fingerprint covers; the stream's data shape is [N, *shape]. `build` and
`parse` work in TF ops on string tensors [S]; `read_header` parses one
stream's header in Python.
"""
import collections
import zlib

import tensorflow as tf

from tf_ardm.coding import crc
from tf_ardm.coding import varint
from tf_ardm.errors import UserError

MAGIC = b"\x8eA"
VERSION = 2
ARITHMETIC = 2
ARITHMETICS = {
    1: "integer-exact, float64 matmuls of 16-bit activations (tf_ardm at b4a784b; retired)",
    2: "integer-exact (fixed-point network; float32 matmuls and conv kernels of 9-bit "
       "activations and 12-bit weights, chunked so that sums stay below 2^24; table "
       "nonlinearities)",
}
# Arithmetics this codec no longer computes, and the release that does.
RETIRED = {1: "tf_ardm at commit b4a784b"}
FINGERPRINT_BYTES = 4
MAX_VARINT = 5
_FIXED = len(MAGIC) + 2 + FINGERPRINT_BYTES  # Magic, version, arithmetic, fingerprint.
MAX_HEADER = _FIXED + 2 * MAX_VARINT + 2 + 4
LEAN_HEADER_MAX = 2 * MAX_VARINT + 4

Header = collections.namedtuple("Header", "budget count size")

FOREIGN = ("the stream was made with a different model or coding settings "
           "(model fingerprint mismatch)")
FORMAT_1_READER = "tf_ardm at commit 73df71d (the last format-1 codec) on the machine that made it"
FORMAT_1 = ("a format-1 ARDM stream: it was made with the float arithmetic, which decodes "
            "only on the TF build and device kind that wrote it; this codec reads format "
            f"{VERSION}; read it with {FORMAT_1_READER}")
UNKNOWN_ARITHMETIC = (f"unknown arithmetic id (this codec computes its coding distributions "
                      f"with arithmetic {ARITHMETIC}: {ARITHMETICS[ARITHMETIC]})")
TRUNCATED = "truncated or corrupt stream header"

_BYTES = [bytes([b]) for b in range(256)]


def unknown_arithmetic(value):
  """The one-line message of a stream or file with arithmetic id `value` (int)."""
  if value in RETIRED:
    return (f"made with the retired arithmetic {value} ({ARITHMETICS[value]}); this codec "
            f"computes arithmetic {ARITHMETIC}: read it with {RETIRED[value]}")
  return f"{UNKNOWN_ARITHMETIC}; id: {value}"


def _strings(values):
  """int [..., m] byte values -> string [...] of m bytes."""
  return tf.strings.reduce_join(tf.gather(_BYTES, tf.cast(values, tf.int32)), -1)


def _be32(values):
  """int64 [S] -> uint8-valued int64 [S, 4], big-endian (the low 32 bits)."""
  shifts = tf.constant([24, 16, 8, 0], tf.int64)
  return tf.bitwise.bitwise_and(tf.bitwise.right_shift(values[:, None], shifts), 0xFF)


def _varint(values):
  """int64 [S] in [0, 2^35) -> LEB128 strings [S]."""
  raw, size = varint.tf_encode(values, MAX_VARINT)
  return tf.strings.substr(_strings(raw), tf.zeros_like(size), size)


def _prefix(fingerprint):
  """The fixed bytes of a full header: magic, version, arithmetic, fingerprint."""
  return MAGIC + bytes([VERSION, ARITHMETIC]) + fingerprint


def _check(prefix, budget, count):
  """The header check int64 [S] of a prefix (bytes) and budget, count [S]."""
  head = tf.tile(tf.constant([list(prefix)], tf.int64), [tf.shape(count)[0], 1])
  message = tf.concat([head, _be32(budget), _be32(count)], 1)
  return tf.bitwise.bitwise_and(tf.cast(crc.crc32(message), tf.int64), 0xFFFF)


def _py_check(prefix, budget, count):
  """The header check (int) of a prefix (bytes) and budget, count (ints), as `_check`."""
  fields = b"".join((v & 0xFFFFFFFF).to_bytes(4, "big") for v in (budget, count))
  return zlib.crc32(prefix + fields) & 0xFFFF


def assert_all(ok, message, *data):
  """Raises InvalidArgumentError(message, first failing stream) unless all ok."""
  first = tf.cast(tf.argmin(tf.cast(ok, tf.int32)), tf.int32)
  return tf.debugging.Assert(
      tf.reduce_all(ok),
      [message] + [tf.gather(d, first) for d in data] + ["(stream", first, "of the batch)"],
      summarize=16)


def build(fingerprint, budget, count, data_crc, payload, lean=False):
  """Streams string [S] from a budget, counts, data CRCs (int64 [S]) and payloads [S].

  fingerprint: the model's FINGERPRINT_BYTES bytes; budget: int scalar.
  With `lean`, the lean framing is written.
  """
  budget = tf.fill(tf.shape(count), tf.cast(budget, tf.int64))
  crc_bytes = _strings(_be32(data_crc))
  if lean:
    return tf.strings.join([_varint(budget), _varint(count), crc_bytes, payload])
  prefix = _prefix(fingerprint)
  check = _check(prefix, budget, count)
  return tf.strings.join([
      prefix, _varint(budget), _varint(count), _strings(_be32(check)[:, 2:]), crc_bytes,
      payload])


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


def _chain(checks, ok, message, *data):
  """Appends assert_all(ok, message, *data), run after all `checks`."""
  with tf.control_dependencies(checks):
    checks.append(assert_all(ok, message, *data))


def _parse_identity(padded, length, fingerprint, checks):
  """Checks magic, version, arithmetic and fingerprint of full streams.

  Each field is checked only where the stream reaches it; a stream that
  ends earlier fails the truncation check that follows.
  """
  def at(pos):
    return tf.fill(tf.shape(length), pos)

  _chain(checks, tf.strings.substr(padded, 0, 2) == MAGIC,
         "not an ARDM stream (bad magic bytes)")
  version = _be_int(padded, at(2), 1)
  _chain(checks, (length <= 2) | (version != 1), FORMAT_1)
  _chain(checks, (length <= 2) | (version == VERSION),
         f"unsupported ARDM stream format version (this codec reads version {VERSION}); "
         "version:", version)
  arithmetic = _be_int(padded, at(3), 1)
  for retired in sorted(RETIRED):
    _chain(checks, (length <= 3) | (arithmetic != retired), unknown_arithmetic(retired))
  _chain(checks, (length <= 3) | (arithmetic == ARITHMETIC), UNKNOWN_ARITHMETIC + "; id:",
         arithmetic)
  _chain(checks, (length < _FIXED) | (
      tf.strings.substr(padded, 4, FINGERPRINT_BYTES) == fingerprint), FOREIGN)


def parse(streams, fingerprint, max_budget, lean=False):
  """Checks and splits streams string [S] (all full, or all lean with `lean`).

  Raises InvalidArgumentError with a one-line reason (bad magic, format-1
  stream, version, arithmetic id, fingerprint, truncated or corrupt header,
  budget outside [1, max_budget]) before any decoding work. A lean stream
  has only the last two; its fingerprint is the caller's to check.

  Returns:
    dict of int64 [S] 'budget', 'count', 'crc' and string [S] 'payload'.
  """
  length = tf.strings.length(streams)
  padded = tf.strings.join([streams, b"\0" * MAX_HEADER])
  checks = []
  if not lean:
    _parse_identity(padded, length, fingerprint, checks)
  budget, pos, budget_ok = _read_varint(
      padded, tf.fill(tf.shape(length), 0 if lean else _FIXED))
  count, pos, count_ok = _read_varint(padded, pos)
  ok = budget_ok & count_ok & (count < 2**32)
  if not lean:
    check = _be_int(padded, pos, 2)
    pos += 2
  data_crc = _be_int(padded, pos, 4)
  end = pos + 4
  _chain(checks, ok & (end <= length), TRUNCATED)
  if not lean:
    _chain(checks, tf.equal(check, _check(_prefix(fingerprint), budget, count)),
           "corrupt stream header (header check mismatch)")
  _chain(checks, (budget >= 1) & (budget <= max_budget),
         f"corrupt stream header: the budget must lie in [1, {max_budget}]; budget:", budget)
  with tf.control_dependencies(checks):
    payload = tf.strings.substr(streams, tf.minimum(end, length),
                                tf.maximum(length - end, 0))
  return {"budget": budget, "count": count, "crc": data_crc, "payload": payload}


def _read_varints(data, pos, n):
  """(values [n], end) of n varints from data[pos]; UserError when truncated."""
  values = []
  for _ in range(n):
    try:
      value, pos = varint.decode(data, pos, MAX_VARINT)
    except (EOFError, ValueError):
      raise UserError(TRUNCATED) from None
    values.append(value)
  return values, pos


def read_header(data, fingerprint, lean=False):
  """Parses the header of one stream (bytes) in Python.

  Returns a Header (budget, count, size: the header's bytes); raises a
  one-line UserError, in the order and with the words of `parse`, when it is
  not a format-2 ARDM stream header, comes from another arithmetic or from
  another model than the one with `fingerprint`, is truncated, or fails the
  header check. With `lean`, fingerprint is unused. The budget range and
  the data CRC are left to `parse` and the decoder.
  """
  if lean:
    (budget, count), pos = _read_varints(data, 0, 2)
    if len(data) < pos + 4 or count >= 2**32:
      raise UserError(TRUNCATED)
    return Header(budget, count, pos + 4)
  if data[:2] != MAGIC:
    raise UserError("not an ARDM stream (bad magic bytes)")
  if len(data) > 2 and data[2] == 1:
    raise UserError(FORMAT_1)
  if len(data) > 2 and data[2] != VERSION:
    raise UserError(f"unsupported ARDM stream format version (this codec reads version "
                    f"{VERSION}); version: {data[2]}")
  if len(data) > 3 and data[3] != ARITHMETIC:
    raise UserError(unknown_arithmetic(data[3]))
  if len(data) >= _FIXED and data[4:_FIXED] != fingerprint:
    raise UserError(FOREIGN)
  (budget, count), pos = _read_varints(data, _FIXED, 2)
  if len(data) < pos + 6 or count >= 2**32:
    raise UserError(TRUNCATED)
  if int.from_bytes(data[pos:pos + 2], "big") != _py_check(_prefix(fingerprint), budget, count):
    raise UserError("corrupt stream header (header check mismatch)")
  return Header(budget, count, pos + 6)
