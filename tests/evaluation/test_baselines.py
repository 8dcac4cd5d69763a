"""Tests of the classic lossless-compression baselines (tf_ardm.evaluation.baselines)."""
import bz2
import gzip
import io
import lzma
import math

import brotli
import imagecodecs
import numpy as np
from PIL import Image
import pytest
from sklearn import datasets as sk_datasets
import zstandard

from tf_ardm.data import text as text_lib
from tf_ardm.errors import UserError
from tf_ardm.evaluation import baselines as bl

DECOMPRESS = {"gzip": gzip.decompress, "bz2": bz2.decompress, "xz": lzma.decompress,
              "brotli": brotli.decompress,
              "zstd": lambda data: zstandard.ZstdDecompressor().decompress(data)}
needs_webp = pytest.mark.skipif(not bl.webp_available(),
                                reason="Pillow built without WebP")


def _random_images(n=16, h=16, w=16, c=3, k=256, seed=0):
  return np.random.RandomState(seed).randint(0, k, size=(n, h, w, c))


def _digits():
  x = sk_datasets.load_digits().images.astype(int)[..., None]
  test = np.arange(len(x)) % 5 == 0
  return x[~test], x[test]


def _decode_image(data, channels):
  """PNG or WebP bytes -> uint8 [H, W, channels], decoded by Pillow."""
  with Image.open(io.BytesIO(data)) as image:
    return np.asarray(image.convert("L" if channels == 1 else "RGB")).reshape(
        image.height, image.width, channels)


# ---------------------------------------------------------- serialization ---


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("codec", bl.IMAGE_CODECS)
def test_every_image_codec_is_lossless_in_process(codec, channels):
  assert bl.image_codec_available(codec)  # imagecodecs is installed with tf_ardm.
  image = _random_images(n=1, h=7, w=9, c=channels, seed=2)[0]
  data, encode_s, decode_s = bl.encode_image(image, codec, timed=True)
  assert bl.encode_image(image, codec) == data and encode_s >= 0 and decode_s >= 0
  decode = {"PNG": imagecodecs.png_decode, "WebP": imagecodecs.webp_decode,
            "JPEG-XL": imagecodecs.jpegxl_decode, "JPEG-LS": imagecodecs.jpegls_decode,
            "JPEG 2000": imagecodecs.jpeg2k_decode, "QOI": imagecodecs.qoi_decode}[codec]
  decoded = decode(data).reshape(7, 9, -1)[..., :channels]
  np.testing.assert_array_equal(decoded, image)


def test_a_lossy_round_trip_raises(monkeypatch):
  encode, decode, *rest = bl._IMAGE_CODECS["QOI"]  # pylint: disable=protected-access
  monkeypatch.setitem(bl._IMAGE_CODECS, "QOI",  # pylint: disable=protected-access
                      (encode, lambda data: decode(data) ^ 1, *rest))
  with pytest.raises(RuntimeError, match="QOI did not decode"):
    bl.encode_image(_random_images(n=1, h=4, w=4)[0], "QOI")
  with pytest.raises(UserError, match="unknown image codec"):
    bl.image_codec_available("GIF")


@pytest.mark.parametrize("channels", [1, 3])
def test_png_round_trip(channels):
  image = _random_images(n=1, h=7, w=9, c=channels)[0]
  data = bl.encode_png(image)
  assert data[:8] == b"\x89PNG\r\n\x1a\n"
  np.testing.assert_array_equal(_decode_image(data, channels), image)


@needs_webp
@pytest.mark.parametrize("channels", [1, 3])
def test_webp_round_trip_is_lossless(channels):
  image = _random_images(n=1, h=7, w=9, c=channels, seed=1)[0]
  data = bl.encode_webp(image)
  assert data[:4] == b"RIFF" and data[8:12] == b"WEBP"
  np.testing.assert_array_equal(_decode_image(data, channels), image)


def test_tile_layout_and_padding():
  x = np.arange(1, 6)[:, None, None, None] * np.ones((5, 2, 3, 1), int)
  mosaic = bl.tile(x)  # 5 datapoints -> 3 columns, 2 rows.
  assert mosaic.shape == (4, 9, 1)
  expected = np.array([[1, 2, 3], [4, 5, 0]])
  np.testing.assert_array_equal(mosaic[::2, ::3, 0], expected)
  np.testing.assert_array_equal(
      mosaic[..., 0], np.kron(expected, np.ones((2, 3), int)))
  # Sequences are tiled as 1 x L images.
  assert bl.tile(np.ones((4, 10, 1), int)).shape == (2, 20, 1)


def test_tiled_bits_divide_by_real_datapoints():
  x = _random_images(n=5, h=4, w=4, c=3)
  expected = 8.0 * len(bl.encode_png(bl.tile(x))) / (5 * 4 * 4 * 3)
  assert bl.png_tiled(x, 256) == pytest.approx(expected)


def test_per_image_bits_count_all_container_bytes():
  x = _random_images(n=3, h=5, w=6, c=1, k=17)
  total = sum(len(bl.encode_png(im)) for im in x)
  assert bl.png_per_image(x, 17) == pytest.approx(8.0 * total / (3 * 30))


def test_raw_bytes_text_is_ascii():
  ids = np.array([9, 6, 13, 13, 16, 1, 24, 16, 19, 13, 5])  # "hello world"
  assert bl.raw_bytes(ids.reshape(1, -1, 1), 28) == b"hello world"
  two = np.stack([ids[:5], ids[6:]])[..., None]
  assert bl.raw_bytes(two, 28) == b"helloworld"


def test_raw_bytes_text_matches_tokenizer():
  sentence = "the quick brown fox jumps over the lazy dog"
  ids = np.asarray(text_lib.encode(sentence)).reshape(1, -1, 1)
  assert bl.raw_bytes(ids, text_lib.NUM_CLASSES) == sentence.encode("ascii")


def test_raw_bytes_images_one_byte_per_value():
  x = _random_images(n=2, h=3, w=3, c=3)
  data = bl.raw_bytes(x, 256)
  assert len(data) == x.size
  np.testing.assert_array_equal(np.frombuffer(data, np.uint8), x.ravel())


@pytest.mark.parametrize("codec", bl.CODECS)
def test_codec_round_trip(codec):
  if not bl.codec_available(codec):
    pytest.skip(f"{codec} not installed")
  data = bl.raw_bytes(_random_images(n=2, k=7), 7)
  packed = bl.compress(data, codec)
  assert DECOMPRESS[codec](packed) == data


def test_unknown_codec_and_bad_values_raise():
  x = _random_images(n=2, h=4, w=4, c=1, k=17)
  with pytest.raises(UserError):
    bl.general_purpose(x, 17, "lz4", per_datapoint=False)
  with pytest.raises(UserError, match=r"^x: values must lie in \[0, 5\), got \[0, 16\]$"):
    bl.png_per_image(x, 5)  # values up to 16 do not fit K = 5.
  with pytest.raises(UserError, match="^x: expected integers, got dtype float64$"):
    bl.png_per_image(x.astype(float), 17)
  with pytest.raises(UserError):
    bl.png_per_image(x[0, 0], 17)  # wrong rank.


def test_bit_depth():
  assert [bl.bit_depth(k) for k in (2, 17, 28, 256, 257)] == [1, 5, 5, 8, 9]


# ------------------------------------------------ constant versus random ---


def _all_baselines():
  fns = {}
  for codec in bl.IMAGE_CODECS:
    fns[f"{codec}_per_image"] = lambda x, k, c=codec: bl.image_per_image(x, k, c)
    fns[f"{codec}_tiled"] = lambda x, k, c=codec: bl.image_tiled(x, k, c)
  for codec in bl.CODECS:
    for per in (True, False):
      fns[f"{codec}_{'per' if per else 'whole'}"] = (
          lambda x, k, c=codec, p=per: bl.general_purpose(x, k, c, p))
  return fns


@pytest.mark.parametrize("name", sorted(_all_baselines()))
def test_constant_compresses_far_below_random(name):
  fn = _all_baselines()[name]
  random = _random_images()
  constant = np.full_like(random, 77)
  r, c = fn(random, 256), fn(constant, 256)
  if r is None:
    assert c is None
    pytest.skip(f"{name}: tool not available")
  assert r > 6.0
  assert c < 0.3 * r


def test_text_through_every_baseline():
  ids = np.random.RandomState(0).randint(1, 28, size=(9, 64, 1))
  for name, value in bl.table(ids, 28, train=ids):
    if value is not None:
      # A JPEG 2000 codestream's headers are ~100 bytes: 64 values each pay it.
      assert 0.0 < value < (24.0 if name == "JPEG 2000 per image" else 20.0), name


# -------------------------------------------------------- histogram model ---


def test_histogram_uniform_random_is_log2_k():
  rng = np.random.RandomState(0)
  k = 17
  train = rng.randint(0, k, size=(20000, 4, 4, 1))
  test = rng.randint(0, k, size=(5000, 4, 4, 1))
  assert bl.histogram_model(train, test, k) == pytest.approx(
      math.log2(k), abs=0.01)


def test_histogram_deterministic_is_near_zero():
  x = np.tile(np.arange(16).reshape(1, 4, 4, 1), (1000, 1, 1, 1))
  bits = bl.histogram_model(x, x, 17)
  # Add-one smoothing: -log2((N + 1) / (N + K)).
  assert bits == pytest.approx(-math.log2(1001 / 1017))
  assert bits < 0.03


def test_histogram_add_one_smoothing_per_position():
  train = np.array([[0, 1], [0, 1], [0, 2]]).reshape(3, 2, 1)
  test = np.array([[0, 0], [1, 2]]).reshape(2, 2, 1)
  k = 3
  p = {(0, 0): 4 / 6, (0, 1): 1 / 6, (1, 0): 1 / 6, (1, 2): 2 / 6}
  expected = -np.mean([math.log2(p[(0, 0)]), math.log2(p[(1, 0)]),
                       math.log2(p[(0, 1)]), math.log2(p[(1, 2)])])
  assert bl.histogram_model(train, test, k) == pytest.approx(expected)


# ----------------------------------------------------- missing tools: None ---


def test_image_codecs_none_without_imagecodecs(monkeypatch):
  monkeypatch.setattr(bl, "_imagecodecs", None)
  x = _random_images(n=2, h=4, w=4)
  assert not bl.webp_available()
  for codec in bl.IMAGE_CODECS:
    if codec == "PNG":  # Pillow's.
      assert bl.image_per_image(x, 256, codec) is not None
    else:
      assert bl.image_per_image(x, 256, codec) is None
      assert bl.image_tiled(x, 256, codec) is None


@pytest.mark.parametrize("codec,module", [("brotli", "_brotli"),
                                          ("zstd", "_zstd")])
def test_optional_codecs_none_when_missing(monkeypatch, codec, module):
  monkeypatch.setattr(bl, module, None)
  x = _random_images(n=2, h=4, w=4)
  assert bl.general_purpose(x, 256, codec, per_datapoint=True) is None
  assert bl.general_purpose(x, 256, codec, per_datapoint=False) is None
  assert bl.compress(b"abc", codec) is None


def test_image_codecs_none_for_unsupported_data():
  x = np.zeros((2, 4, 4, 2), int)  # two channels: neither 'L' nor 'RGB'.
  assert bl.png_per_image(x, 256) is None
  assert bl.png_tiled(np.zeros((2, 4, 4, 1), int), 300) is None
  assert bl.webp_tiled(np.zeros((2, 1, 20000, 1), int), 2) is None


# ------------------------------------------------------------------ tables ---


def test_table_and_format():
  x = _random_images(n=4, h=4, w=4, c=1, k=17)
  rows = bl.table(x, 17)
  names = [name for name, _ in rows]
  assert len(names) == len(set(names)) == 1 + 2 * len(bl.IMAGE_CODECS) + 2 * len(bl.CODECS) + 1
  assert names[1:3] == ["PNG per image", "PNG tiled"]
  assert dict(rows)["histogram model"] is None
  assert dict(bl.table(x, 17, train=x))["histogram model"] is not None
  text = bl.format_table([("a", 3.0), ("long name", None)], reference=2.0)
  lines = text.splitlines()
  assert "ratio" in lines[0]
  assert lines[2].split() == ["a", "3.000", "1.50"]
  assert lines[3].split() == ["long", "name", "n/a", "n/a"]
  assert len({len(line) for line in lines[:3]}) == 1  # aligned columns.
  assert "ratio" not in bl.format_table([("a", 3.0)])


def test_digits_reference_numbers():
  train, test = _digits()
  assert test.shape == (360, 8, 8, 1)
  assert bl.histogram_model(train, test, 17) == pytest.approx(2.44, abs=0.02)
  assert bl.png_per_image(test, 17) == pytest.approx(14.2, abs=0.3)
  if bl.codec_available("brotli"):
    assert bl.general_purpose(test, 17, "brotli", False) == pytest.approx(
        2.76, abs=0.1)
