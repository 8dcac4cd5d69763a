"""The version-2 .ardm container: model identity once, then lean streams."""
import zlib

import numpy as np
import pytest
import tensorflow as tf

from tf_ardm.coding import container
from tf_ardm.coding import stream
from tf_ardm.coding import varint
from tf_ardm.errors import UserError

FP = b"\x9a\x00\x10\xff"
ORIGINALS = [container.Original(container.PNG, (5, 7, 3)),
             container.Original(container.NPY, (2, 4, 4, 1), "<i4"),
             container.Original(container.TEXT, (11,), newline=True),
             container.Original(container.TEXT, (0,))]


def _lean(budget, payloads):
  """Lean streams (bytes) of one datapoint each, with made-up CRCs."""
  n = len(payloads)
  out = stream.build(FP, budget, tf.ones([n], tf.int64), tf.range(n, dtype=tf.int64) * 7919,
                     tf.constant(payloads, tf.string), lean=True)
  return list(out.numpy())


STREAMS = _lean(9, [b"", b"\x00\x01\x02", bytes(range(256)) * 2])


def _error(data, path="f.ardm"):
  """The UserError text of unpacking data; it is one line naming the path."""
  with pytest.raises(UserError) as info:
    container.unpack(data, path)
  text = str(info.value)
  assert "\n" not in text and text.startswith(f"{path}: "), text
  return text


@pytest.mark.parametrize("original", ORIGINALS, ids=["png", "npy", "text", "empty-text"])
def test_round_trip_with_lean_streams(original):
  for streams in (STREAMS, STREAMS[:1], []):
    data = container.pack(original, streams, FP)
    back, fingerprint, got = container.unpack(data, "f.ardm")
    assert (back, fingerprint, got) == (original, FP, streams)
    assert [stream.read_header(s, None, lean=True) for s in got] == [
        (9, 1, 6)] * len(streams)
  # The layout: magic, version, kind ... arithmetic, fingerprint, streams.
  data = container.pack(original, STREAMS, FP)
  assert data[:6] == b"ARDM" + bytes([2, original.kind])
  tail = varint.encode(len(STREAMS)) + b"".join(varint.encode(len(s)) + s for s in STREAMS)
  assert data.endswith(bytes([stream.ARITHMETIC]) + FP + tail)


def test_truncation_at_every_byte_is_a_user_error():
  for original in ORIGINALS:
    data = container.pack(original, STREAMS, FP)
    for cut in range(len(data)):
      message = _error(data[:cut])
      assert "truncated" in message or "bad magic" in message or "bytes after" in message, (
          cut, message)
    assert _error(data + b"\0") == "f.ardm: corrupt .ardm file (1 bytes after the last stream)"


def test_random_corruption_is_a_user_error_or_decodes():
  """Flipped bytes give a one-line UserError or some container, never another exception."""
  rng = np.random.default_rng(0)
  data = container.pack(ORIGINALS[1], STREAMS, FP)
  errors = 0
  for _ in range(3000):
    bad = bytearray(data)
    for i in rng.integers(len(data), size=rng.integers(1, 4)):
      bad[i] = rng.integers(256)
    try:
      container.unpack(bytes(bad), "f.ardm")
    except UserError as e:
      assert "\n" not in str(e)
      errors += 1
  assert errors > 100


def test_only_integer_and_bool_dtypes_are_read():
  for dtype in ("|b1", "|u1", "<i2", ">u4", "<i8"):
    original = container.Original(container.NPY, (3,), dtype)
    assert container.unpack(container.pack(original, [], FP), "f.ardm")[0] == original
  for dtype in ("<f4", "|O", "<U3", "<i4,", "04i4", "(2,)<i4", "i4", ""):
    data = container.pack(container.Original(container.NPY, (3,), dtype), [], FP)
    assert _error(data) == f"f.ardm: corrupt .ardm file (dtype {dtype!r})"


def test_version_1_and_other_versions_are_refused():
  v1 = container.pack(ORIGINALS[0], STREAMS, FP)
  v1 = v1[:4] + b"\x01" + v1[5:]
  message = _error(v1)
  assert message.startswith("f.ardm: a version-1 .ardm file")
  assert "73df71d" in message and "float arithmetic" in message
  assert "reads version 2" in message and stream.FORMAT_1_READER in message
  v3 = v1[:4] + b"\x03" + v1[5:]
  assert _error(v3) == ("f.ardm: .ardm container version 3 is not supported "
                        "(this tool reads version 2)")
  assert _error(b"ARDX" + v1[4:]) == "f.ardm: not an .ardm file (bad magic bytes)"


def test_unknown_arithmetic_is_refused():
  for arithmetic in (0, 1, 3, 255):  # 1: retired.
    data = container.pack(ORIGINALS[2], STREAMS, FP, arithmetic=arithmetic)
    assert _error(data) == "f.ardm: " + stream.unknown_arithmetic(arithmetic)
  assert "b4a784b" in stream.unknown_arithmetic(1)
  with pytest.raises(ValueError):
    container.pack(ORIGINALS[2], STREAMS, FP, arithmetic=256)
  with pytest.raises(ValueError):
    container.pack(ORIGINALS[2], STREAMS, FP[:3])


def test_check_model():
  container.check_model(FP, FP, "f.ardm")
  with pytest.raises(UserError) as info:
    container.check_model(FP, b"\0\0\0\0", "f.ardm")
  assert str(info.value) == f"f.ardm: {stream.FOREIGN}"


def test_a_byte_file_is_stored_when_its_streams_would_make_it_larger():
  raw = bytes(range(256)) + b"\xff" * 5
  original = container.Original(container.BYTES, (len(raw),), raw=raw)
  small = _lean(9, [b"\x01" * 10])
  coded = container.pack(original, small, FP)
  assert not container.is_stored(coded) and coded[5] == container.BYTES
  assert container.unpack(coded, "f.ardm")[0] == container.Original(container.BYTES, (261,))
  large = _lean(9, [b"\x01" * 300])  # The streams would outgrow the 261 bytes.
  data = container.pack(original, large, FP)
  assert container.is_stored(data)
  header = b"ARDM" + bytes([2, container.STORED]) + varint.encode(1) + varint.encode(261)
  crc = zlib.crc32(raw).to_bytes(4, "big")
  assert data == header + bytes([stream.ARITHMETIC]) + FP + crc + raw  # 18 bytes + the bytes.
  back, fingerprint, streams = container.unpack(data, "f.ardm")
  assert (back.kind, back.shape, back.raw, fingerprint, streams) == (
      container.STORED, (261,), raw, FP, [])
  assert container.rebuild(np.zeros([0, 64, 1], np.int32), back, None) == raw
  container.check_count(back, None, 0, "f.ardm")
  with pytest.raises(UserError, match="corrupt"):
    container.check_count(back, None, 1, "f.ardm")
  for cut in range(len(data)):
    message = _error(data[:cut])
    assert "truncated" in message or "bad magic" in message, (cut, message)
  assert _error(data + b"\0") == "f.ardm: corrupt .ardm file (1 bytes after the last stream)"
  for i in range(len(header) + 5, len(data)):  # A flipped bit in the CRC or the bytes.
    bad = bytearray(data)
    bad[i] ^= 0x10
    assert _error(bytes(bad)) == "f.ardm: corrupt .ardm file (the stored bytes fail their CRC)"
