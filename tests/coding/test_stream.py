"""The version-2 stream format: full and lean framing, in TF ops and in Python."""
import zlib

import pytest
import tensorflow as tf

from tf_ardm import errors
from tf_ardm.coding import stream
from tf_ardm.coding import varint
from tf_ardm.errors import UserError

FP = b"\x01\xfe\x00\x7f"
MAX_BUDGET = 300
PAYLOADS = [b"", b"\x00\x00payload", bytes(range(256)) * 3]
SPEC = [tf.TensorSpec([None], tf.string)]
_PARSE = {lean: tf.function(lambda s, lean=lean: stream.parse(s, FP, MAX_BUDGET, lean=lean),
                            input_signature=SPEC)
          for lean in (False, True)}


def _build(budget, counts, crcs, payloads, lean=False):
  """Streams (list of bytes) built by stream.build."""
  out = stream.build(FP, budget, tf.constant(counts, tf.int64), tf.constant(crcs, tf.int64),
                     tf.constant(payloads, tf.string), lean=lean)
  return list(out.numpy())


def _parse(streams, lean=False):
  """stream.parse in a graph, as numpy: dict of lists."""
  fields = _PARSE[lean](tf.constant(streams, tf.string))
  return {key: list(value.numpy()) for key, value in fields.items()}


def _parse_error(streams, lean=False):
  """The one-line UserError text of parse on streams, stream index kept."""
  with pytest.raises(tf.errors.InvalidArgumentError) as info:
    _parse(streams, lean)
  return str(errors.from_tf_error(info.value))


def _header_error(data, lean=False):
  with pytest.raises(UserError) as info:
    stream.read_header(data, FP, lean=lean)
  return str(info.value)


def _v1_stream(budget=5, count=1):
  """A version-1 stream header as the format-1 codec wrote it (magic, 1, fingerprint, ...)."""
  prefix = stream.MAGIC + b"\x01" + FP
  check = zlib.crc32(prefix + budget.to_bytes(4, "big") + count.to_bytes(4, "big")) & 0xFFFF
  return (prefix + varint.encode(budget) + varint.encode(count) + check.to_bytes(2, "big")
          + b"\0\0\0\0payload")


# ------------------------------------------------------------ round trips ---


@pytest.mark.parametrize("lean", [False, True])
@pytest.mark.parametrize("budget", [1, 127, 128, MAX_BUDGET])
def test_round_trip_and_read_header_agree(lean, budget):
  counts = [1, 127, 40000]
  crcs = [0, 2**32 - 1, 0x12345678]
  streams = _build(budget, counts, crcs, PAYLOADS, lean)
  assert len(set(streams)) == 3
  fields = _parse(streams, lean)
  assert fields == {"budget": [budget] * 3, "count": counts, "crc": crcs, "payload": PAYLOADS}
  for data, count, data_crc, payload in zip(streams, counts, crcs, PAYLOADS):
    header = stream.read_header(data, FP, lean=lean)
    assert header == (budget, count, len(data) - len(payload))
    assert data[header.size - 4:] == data_crc.to_bytes(4, "big") + payload


def test_header_sizes():
  full = _build(127, [127], [7], [b"x"])[0]
  lean = _build(127, [1], [7], [b"x"], lean=True)[0]
  assert len(full) - 1 == 16 and stream.read_header(full, FP).size == 16
  assert len(lean) - 1 == 6 and stream.read_header(lean, FP, lean=True).size == 6
  assert full[:4] == stream.MAGIC + bytes([stream.VERSION, stream.ARITHMETIC])
  assert full[4:8] == FP and stream.VERSION == 2 and stream.ARITHMETIC in stream.ARITHMETICS
  assert len(_build(128, [128], [7], [b""])[0]) == 18
  assert len(_build(128, [1], [7], [b""], lean=True)[0]) == 7
  widest = _build(2**35 - 1, [2**32 - 1], [7], [b""])[0]
  assert len(widest) == stream.MAX_HEADER == 24
  widest_lean = _build(2**35 - 1, [2**32 - 1], [7], [b""], lean=True)[0]
  assert len(widest_lean) == stream.LEAN_HEADER_MAX == 14


# ---------------------------------------------------------------- errors ---


def _full_cases():
  """[(bad stream, message of both parse and read_header)] for full framing."""
  good = _build(5, [3], [99], [b"payload"])[0]  # 16-byte header.
  size = stream.read_header(good, FP).size

  def at(i, value):
    return good[:i] + bytes([value]) + good[i + 1:]

  cases = [(good[:n], "not an ARDM stream (bad magic bytes)") for n in (0, 1)]
  cases += [(good[:n], stream.TRUNCATED) for n in range(2, size)]
  cases += [
      (at(0, 0x8f), "not an ARDM stream (bad magic bytes)"),
      (b"PK\x03\x04" + good[4:], "not an ARDM stream (bad magic bytes)"),
      (at(2, 1), stream.FORMAT_1),
      (_v1_stream(), stream.FORMAT_1),
      (at(2, 3), "unsupported ARDM stream format version (this codec reads version 2); "
                 "version: 3"),
      (at(2, 0), "unsupported ARDM stream format version (this codec reads version 2); "
                 "version: 0"),
      (at(3, 7), stream.unknown_arithmetic(7)),
      (at(3, 0), stream.unknown_arithmetic(0)),
      (at(3, 1), stream.unknown_arithmetic(1)),  # Retired: says which release reads it.
      (at(4, 0x02), stream.FOREIGN),
      (at(7, 0xff), stream.FOREIGN),
      (good[:8] + b"\x85" * 5 + good[9:], stream.TRUNCATED),  # A budget past 5 bytes.
      (good[:9] + b"\x83" * 5 + good[10:], stream.TRUNCATED),  # A count past 5 bytes.
      (_build(5, [2**32], [0], [b""])[0], stream.TRUNCATED),  # Count outside uint32.
  ]
  mismatch = "corrupt stream header (header check mismatch)"
  cases += [(at(8, 6), mismatch), (at(9, 4), mismatch), (at(10, good[10] ^ 1), mismatch),
            (at(11, good[11] ^ 0x80), mismatch)]
  return cases


def test_retired_arithmetic_names_the_release_that_reads_it():
  text = stream.unknown_arithmetic(1)
  assert "\n" not in text and "retired arithmetic 1" in text and "b4a784b" in text
  assert "unknown arithmetic id" in stream.unknown_arithmetic(9)


def test_corrupt_full_headers_give_the_right_error():
  good = _build(5, [3], [99], [b"payload"])[0]
  for bad, message in _full_cases():
    assert _header_error(bad) == message, bad
    # The bad stream is the second of a batch; the error names it.
    assert _parse_error([good, bad, good]) == message + " (stream 1 of the batch)", bad


def test_corrupt_lean_headers_give_the_right_error():
  good = _build(5, [1], [99], [b"payload"], lean=True)[0]
  for n in range(6):
    assert _header_error(good[:n], lean=True) == stream.TRUNCATED
    assert _parse_error([good, good[:n]], lean=True) == (
        stream.TRUNCATED + " (stream 1 of the batch)")
  long_varint = b"\x81" * 5 + good[1:]
  assert _header_error(long_varint, lean=True) == stream.TRUNCATED
  assert _parse_error([long_varint], lean=True) == stream.TRUNCATED + " (stream 0 of the batch)"


def test_budget_outside_the_range_is_refused():
  message = f"corrupt stream header: the budget must lie in [1, {MAX_BUDGET}]; budget:"
  for lean in (False, True):
    for budget in (0, MAX_BUDGET + 1, 2**32 + 5):  # 2^32 + 5 passes the header check.
      bad = _build(budget, [1], [0], [b"x"], lean)[0]
      assert stream.read_header(bad, FP, lean=lean).budget == budget  # Left to parse.
      assert _parse_error([bad], lean) == f"{message} {budget} (stream 0 of the batch)"


def test_format_1_and_unknown_arithmetic_messages():
  text = stream.FORMAT_1
  assert "\n" not in text and "format-1" in text and "float arithmetic" in text
  assert "reads format 2" in text and "73df71d" in text and "machine that made it" in text
  assert "TF build and device kind" in text
  message = stream.unknown_arithmetic(9)
  assert message.endswith("id: 9") and "integer-exact" in message and "\n" not in message


def test_parse_checks_fields_in_order():
  """A stream with several faults reports the first one in header order."""
  good = _build(5, [3], [99], [b"payload"])[0]
  v1_foreign = good[:2] + b"\x01\x01" + b"zzzz" + good[8:]
  assert _parse_error([v1_foreign]) == stream.FORMAT_1 + " (stream 0 of the batch)"
  assert _header_error(v1_foreign) == stream.FORMAT_1
  arith_foreign = good[:3] + b"\x05" + b"zzzz" + good[8:]
  assert _header_error(arith_foreign) == stream.unknown_arithmetic(5)
  foreign_short = good[:4] + b"zzzz" + good[8:12]
  assert _header_error(foreign_short) == stream.FOREIGN
  assert _parse_error([foreign_short]) == stream.FOREIGN + " (stream 0 of the batch)"
