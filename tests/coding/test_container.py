"""The version-2 .ardm container: model identity once, then lean streams."""
import types
import zlib

import imagecodecs
import numpy as np
import pytest
import tensorflow as tf

from tf_ardm.coding import container
from tf_ardm.coding import stream
from tf_ardm.coding import varint
from tf_ardm.config import ModelConfig
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


# ------------------------------------------------------- reading image files ---


def _image_config(channels, num_classes=256):
  return ModelConfig("photos", "image", [4, 4, channels], num_classes, "unet", {})


def _write_png(path, array):
  path.write_bytes(imagecodecs.png_encode(np.ascontiguousarray(array)))
  return str(path)


RGB8 = np.arange(5 * 7 * 3, dtype=np.uint8).reshape(5, 7, 3)


def test_an_8_bit_rgb_png_is_read_as_is(tmp_path):
  x, original = container.read(_write_png(tmp_path / "rgb.png", RGB8), _image_config(3))
  assert original == container.Original(container.PNG, (5, 7, 3))
  assert x.shape == (4, 4, 4, 3)  # 5 x 7 in 4 x 4 patches, edges padded.
  np.testing.assert_array_equal(x[0], RGB8[:4, :4])


@pytest.mark.parametrize("name,array,got", [
    ("grey.png", RGB8[..., 0], "an 8-bit grayscale PNG"),
    ("rgba.png", np.concatenate([RGB8, RGB8[..., :1]], -1), "an 8-bit RGBA PNG"),
    ("rgb16.png", RGB8.astype(np.uint16) * 257, "a 16-bit RGB PNG"),
    ("grey16.png", RGB8[..., 0].astype(np.uint16) * 257, "a 16-bit grayscale PNG"),
])
def test_an_rgb_model_refuses_other_pngs_in_one_line(tmp_path, name, array, got):
  """Pillow reads a 16-bit RGB PNG as 8-bit RGB: it must not be coded (lossily)."""
  path = _write_png(tmp_path / name, array)
  with pytest.raises(UserError) as raised:
    container.read(path, _image_config(3))
  message = str(raised.value)
  assert message == (f"{path}: {got}; this model codes 8-bit RGB images: an 8-bit RGB PNG "
                     "(no alpha, no palette, not grayscale), or an NPY array")
  assert "\n" not in message


def test_a_grey_model_says_what_it_accepts(tmp_path):
  path = _write_png(tmp_path / "rgb.png", RGB8)
  with pytest.raises(UserError, match=r"an 8-bit RGB PNG; this model codes 1-channel "
                                      r"images: a grayscale PNG \(8 or 16 bits\)"):
    container.read(path, _image_config(1, 17))
  x, _ = container.read(_write_png(tmp_path / "g.png", RGB8[..., 0] % 17), _image_config(1, 17))
  assert x.shape == (4, 4, 4, 1)


def test_compress_writes_nothing_for_a_refused_png(tmp_path, monkeypatch):
  """The compress command reads every input before it writes anything."""
  from tf_ardm.cli import compress  # pylint: disable=g-import-not-at-top

  class FakeCoder:
    config = _image_config(3)
    num_steps = 8

    def check_budget(self, budget):
      return budget

  monkeypatch.setattr(compress.coder_lib, "load", lambda path: FakeCoder())
  monkeypatch.setattr(compress.flags, "model_path", lambda: "model")
  monkeypatch.setattr(compress.app, "configure_codec_process", lambda: None)
  monkeypatch.setattr(compress, "FLAGS", types.SimpleNamespace(
      overwrite=False, budget=None, normalize=False, verbose=False))
  src = _write_png(tmp_path / "rgba.png", np.zeros([4, 4, 4], np.uint8))
  out = tmp_path / "out.ardm"
  with pytest.raises(UserError, match="8-bit RGBA PNG; this model codes 8-bit RGB"):
    compress.main(["compress", src, str(out)])
  assert sorted(p.name for p in tmp_path.iterdir()) == ["rgba.png"]
