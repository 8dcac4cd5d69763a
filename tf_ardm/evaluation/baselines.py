"""Classic lossless-compression baselines, in bits per dimension.

Our model's bits/dim are compared against these. Every `*_per_image`,
`*_tiled` and `general_purpose` function takes

  x: integer array [N, H, W, C] (images, values in [0, K)) or [N, L, 1]
     (text8 token ids, 1 = ' ', 2 = 'a', ..., 27 = 'z'),
  num_classes: K,

and returns bits/dim as a float:

  bits/dim = 8 * (total container bytes) / (N * prod(x.shape[1:])),

with every byte of the container counted (PNG chunks and headers, the WebP
RIFF header, gzip/xz/zstd framing, ...).

The image codecs (`IMAGE_CODECS`) all run in-process: PNG (Pillow, optimize,
level 9), and through the `imagecodecs` package lossless WebP (level 100,
method 6), lossless JPEG-XL (effort 9), lossless JPEG-LS (NEAR = 0),
reversible JPEG 2000 (a raw J2K codestream, 5/3 wavelet) and QOI. Every
encode is decoded again and compared: `encode_image` raises RuntimeError
unless the round trip gives the exact image back. Grey images (C = 1) are
coded as one channel, except by WebP and QOI, which only code RGB(A) and get
R = G = B (as a grey photograph would be stored in them).

Where a baseline cannot be computed, it returns None instead of a number:

  * the codec's library is missing: the image codecs other than PNG when
    `imagecodecs` is not installed (or was built without the codec),
    brotli / zstd when the pip packages `brotli` / `zstandard` are missing;
  * the data does not fit the image format: K > 256 (the image codecs get the
    values as 8-bit samples, written as-is, not rescaled), C not 1 or 3, or an
    image wider or taller than the codec's limit (WebP's 16383 pixels).

Sequences [N, L, C] go to the image codecs as 1 x L images. "Tiled" variants
put the whole set into one near-square mosaic (ceil(sqrt(N)) columns, padding
tiles all zeros) and encode it as one file; the padding is not counted in the
denominator, which is always the real N * dims.
"""
import bz2
import gzip
import io
import lzma
import time

import numpy as np
from PIL import Image

from tf_ardm.data import text as text_lib
from tf_ardm.data import tiles
from tf_ardm.data import validation
from tf_ardm.errors import UserError, check

try:  # Optional: pip package `brotli`.
  import brotli as _brotli
except ImportError:  # pragma: no cover - depends on the environment.
  _brotli = None

try:  # Optional: pip package `imagecodecs`.
  import imagecodecs as _imagecodecs
except ImportError:  # pragma: no cover - depends on the environment.
  _imagecodecs = None

try:  # Optional: pip package `zstandard`.
  import zstandard as _zstd
except ImportError:  # pragma: no cover - depends on the environment.
  _zstd = None

CODECS = ("gzip", "bz2", "xz", "brotli", "zstd")
ZSTD_LEVEL = 22  # zstd's maximum ("ultra") level.
_XZ_DICT_SIZE = 64 << 20  # preset 9's dictionary.
WEBP_MAX_SIDE = 16383
JXL_EFFORT = 9  # As `cjxl -d 0 -e 9`.


# ----------------------------------------------------------------- helpers ---


def _validate(x, num_classes):
  """Returns `x` as an int64 array after checking its shape and values."""
  x = np.asarray(x)
  check(x.ndim in (3, 4),
        "expected x of shape [N, H, W, C] or [N, L, C], got shape %s",
        x.shape)
  check(x.shape[0] > 0 and x.size > 0, "x is empty (shape %s)", x.shape)
  return validation.check_values(x, num_classes, "x")


def _dims(x):
  return int(np.prod(x.shape[1:]))


def _bits_per_dim(total_bytes, x):
  return 8.0 * total_bytes / (x.shape[0] * _dims(x))


def _as_images(x):
  """[N, H, W, C] stays; a sequence [N, L, C] becomes [N, 1, L, C]."""
  return x if x.ndim == 4 else x[:, None]


def _image_ok(x, num_classes):
  """Whether the 8-bit 'L'/'RGB' image codecs apply to this data."""
  return num_classes <= 256 and x.shape[-1] in (1, 3)


def is_text(x, num_classes):
  """Whether `x` is a text8 token sequence: shape [N, L, 1], K <= 28."""
  return np.ndim(x) == 3 and np.shape(x)[-1] == 1 and num_classes <= 28


def tile(x):
  """Tiles images [N, H, W, C] into one mosaic [rows*H, cols*W, C].

  cols = ceil(sqrt(N)), rows = ceil(N / cols); datapoint i sits in row
  i // cols, column i % cols; unused tiles are zeros. Sequences [N, L, C] are
  tiled as 1 x L images.
  """
  return tiles.mosaic(_as_images(np.asarray(x)))


def _to_pil(image):
  """[H, W, 1] or [H, W, 3] values in [0, 256) -> PIL 'L' or 'RGB' image."""
  image = np.ascontiguousarray(image, dtype=np.uint8)
  if image.shape[-1] == 1:
    return Image.fromarray(image[..., 0])  # mode 'L'
  return Image.fromarray(image)  # mode 'RGB'


def _png_encode(image):
  buf = io.BytesIO()
  _to_pil(image).save(buf, format="PNG", optimize=True, compress_level=9)
  return buf.getvalue()


def _png_decode(data):
  with Image.open(io.BytesIO(data)) as image:
    return np.asarray(image)


def _imagecodec(fn, **kwargs):
  """An imagecodecs function, or None when the package is missing."""
  if _imagecodecs is None:
    return None
  return lambda x: getattr(_imagecodecs, fn)(x, **kwargs)


def _jpegls_encode(image):
  # CharLS's own bound on the output is too small for noise-like images
  # ("destination buffer too small"): give it room for twice the raw size.
  return _imagecodecs.jpegls_encode(image, level=0, out=2 * image.nbytes + 4096)


# name -> (encode, decode, the imagecodecs codec it needs or None, max side,
# whether it codes only RGB(A)): encode takes uint8 [H, W, C] (C in 1, 3, or
# 3 only), decode returns what the codec gives back.
_IMAGE_CODECS = {
    "PNG": (_png_encode, _png_decode, None, None, False),
    "WebP": (_imagecodec("webp_encode", level=100, lossless=True, method=6),
             _imagecodec("webp_decode"), "WEBP", WEBP_MAX_SIDE, True),
    "JPEG-XL": (_imagecodec("jpegxl_encode", lossless=True, effort=JXL_EFFORT),
                _imagecodec("jpegxl_decode"), "JPEGXL", None, False),
    "JPEG-LS": (_jpegls_encode, _imagecodec("jpegls_decode"),
                "JPEGLS", None, False),
    "JPEG 2000": (_imagecodec("jpeg2k_encode", level=0, codecformat="J2K", reversible=True),
                  _imagecodec("jpeg2k_decode"), "JPEG2K", None, False),
    "QOI": (_imagecodec("qoi_encode"), _imagecodec("qoi_decode"), "QOI", None, True),
}
IMAGE_CODECS = tuple(_IMAGE_CODECS)


def image_codec_available(codec):
  """Whether `encode_image` can run `codec` (one of IMAGE_CODECS) here."""
  check(codec in _IMAGE_CODECS, "unknown image codec %r; choose from %s", codec,
        ", ".join(IMAGE_CODECS))
  needs = _IMAGE_CODECS[codec][2]
  return needs is None or (_imagecodecs is not None
                           and bool(getattr(_imagecodecs, needs).available))


def image_fits(image, codec):
  """Whether `codec` can hold an image [H, W, C] of this size."""
  max_side = _IMAGE_CODECS[codec][3]
  return max_side is None or max(image.shape[:2]) <= max_side


def _same(decoded, image):
  decoded = np.asarray(decoded)
  if image.shape[-1] == 1 and decoded.ndim == 3:
    decoded = decoded[..., :1]  # grey coded as RGB (WebP, QOI)
  return decoded.dtype == np.uint8 and decoded.size == image.size and np.array_equal(
      decoded.reshape(image.shape), image)


def encode_image(image, codec, timed=False):
  """`codec`'s lossless bytes of one image [H, W, C] (C in 1, 3; values < 256,
  written as-is), checked: the bytes are decoded and RuntimeError is raised
  unless that gives `image` back exactly.

  timed=True returns (bytes, encode seconds, decode seconds) instead.
  """
  encode, decode, _, _, rgb_only = _IMAGE_CODECS[codec]
  image = np.ascontiguousarray(image, dtype=np.uint8)
  start = time.perf_counter()
  data = bytes(encode(np.repeat(image, 3, -1) if rgb_only and image.shape[-1] == 1
                      else image))
  middle = time.perf_counter()
  decoded = decode(data)
  end = time.perf_counter()
  if not _same(decoded, image):
    raise RuntimeError(f"{codec} did not decode its own bytes to the image coded "
                       f"({image.shape}); this codec build is not lossless here")
  return (data, middle - start, end - middle) if timed else data


def encode_png(image):
  """PNG bytes of one image [H, W, C] (C in 1, 3; values < 256, as-is)."""
  return encode_image(image, "PNG")


def webp_available():
  """Whether lossless WebP can be written here."""
  return image_codec_available("WebP")


def encode_webp(image):
  """Lossless WebP bytes of one image [H, W, C] (C in 1, 3; values < 256).

  A grey image is stored as RGB with R = G = B by libwebp: converting the
  decoded image to one channel gives it back.
  """
  return encode_image(image, "WebP")


# ------------------------------------------------------------ the baselines ---


def bit_depth(num_classes):
  """Bits per value of a fixed-width code, ceil(log2 K), as a float.

  This is the bits/dim of storing the data uncompressed at minimal width.
  """
  check(int(num_classes) >= 1, "num_classes must be >= 1, got %s",
        num_classes)
  return float((int(num_classes) - 1).bit_length())


def _image_codec_applies(x, num_classes, codec):
  return image_codec_available(codec) and _image_ok(x, num_classes)


def image_per_image(x, num_classes, codec):
  """Each datapoint as its own `codec` file (one of IMAGE_CODECS); mean bits/dim.

  x: [N, H, W, C] or [N, L, C] ints in [0, K). None when the codec is not
  available, K > 256, C not in (1, 3), or an image is larger than the codec
  holds.
  """
  x = _validate(x, num_classes)
  images = _as_images(x)
  if not _image_codec_applies(x, num_classes, codec) or not image_fits(images[0], codec):
    return None
  return _bits_per_dim(sum(len(encode_image(im, codec)) for im in images), x)


def image_tiled(x, num_classes, codec):
  """The whole set as one `codec` mosaic (see `tile`); bits/dim over real N.
  None as `image_per_image`."""
  x = _validate(x, num_classes)
  if not _image_codec_applies(x, num_classes, codec):
    return None
  mosaic = tile(x)
  if not image_fits(mosaic, codec):
    return None
  return _bits_per_dim(len(encode_image(mosaic, codec)), x)


def png_per_image(x, num_classes):
  """Each datapoint as its own PNG (optimize, level 9); see `image_per_image`."""
  return image_per_image(x, num_classes, "PNG")


def png_tiled(x, num_classes):
  """The whole set as one PNG mosaic; see `image_tiled`."""
  return image_tiled(x, num_classes, "PNG")


def webp_per_image(x, num_classes):
  """Each datapoint as its own lossless WebP; see `image_per_image`."""
  return image_per_image(x, num_classes, "WebP")


def webp_tiled(x, num_classes):
  """The whole set as one lossless WebP mosaic; see `image_tiled`."""
  return image_tiled(x, num_classes, "WebP")


def raw_bytes(x, num_classes):
  """Byte serialization fed to the general-purpose compressors (bytes).

  Text ([N, L, 1], K <= 28): one ASCII character per token, ' ' and 'a'..'z'
  (the unused id 0 becomes '?'), datapoints concatenated without separators,
  so the compressors see real text. Anything else: the values in C order,
  one byte each (uint8) for K <= 256, two bytes (little-endian uint16) for
  K <= 65536. Returns `bytes` (not bits/dim).
  """
  x = _validate(x, num_classes)
  if is_text(x, num_classes):
    return text_lib.to_ascii(x)
  check(num_classes <= 65536, "num_classes %d > 65536 is not supported",
        num_classes)
  dtype = np.uint8 if num_classes <= 256 else np.dtype("<u2")
  return x.astype(dtype).tobytes()


def compress(data, codec, zstd_level=ZSTD_LEVEL):
  """Compresses `data` (bytes) with `codec` at its maximum level.

  gzip 9 (mtime 0), bz2 9, xz preset 9 | EXTREME (dictionary capped at
  max(input size, 4 KiB); same output length as plain 9e, far less memory),
  brotli quality 11 with the largest window (lgwin 24), zstd at zstd_level
  (default 22, its maximum).
  Returns the full container bytes, or None when the codec's package
  (brotli / zstandard) is missing.
  """
  if codec == "gzip":
    return gzip.compress(data, compresslevel=9, mtime=0)
  if codec == "bz2":
    return bz2.compress(data, 9)
  if codec == "xz":
    # Preset 9e, with the dictionary shrunk to the input size (as the xz tool
    # does for small inputs): a dictionary larger than the data cannot find
    # more matches, and this avoids allocating ~670 MiB per call.
    dict_size = min(max(len(data), 4096), _XZ_DICT_SIZE)
    filters = [{"id": lzma.FILTER_LZMA2, "preset": 9 | lzma.PRESET_EXTREME,
                "dict_size": dict_size}]
    return lzma.compress(data, format=lzma.FORMAT_XZ, filters=filters)
  if codec == "brotli":
    if _brotli is None:
      return None
    return _brotli.compress(data, quality=11, lgwin=24)
  if codec == "zstd":
    if _zstd is None:
      return None
    return _zstd.ZstdCompressor(level=zstd_level).compress(data)
  raise UserError(f"unknown codec {codec!r}; choose from {', '.join(CODECS)}")


def zstd_dictionary(samples, size=112640):
  """A zstd dictionary (zstandard.ZstdCompressionDict) trained on `samples`
  (a list of bytes, e.g. training records of the size to be coded) with
  zstandard.train_dictionary; `size` bytes at most (zstd's default, 110 KiB)."""
  check(_zstd is not None, "zstandard is not installed")
  return _zstd.train_dictionary(size, samples)


def zstd_dictionary_coder(dictionary, level=19):
  """(compress, decompress): bytes -> bytes functions of zstd at `level` with
  a trained dictionary, one frame each without the dictionary id (the
  caller names the dictionary, as a codec's caller names its model) and
  without a checksum. The dictionary is digested once, here."""
  compressor = _zstd.ZstdCompressor(level=level, dict_data=dictionary, write_dict_id=False,
                                    write_checksum=False)
  decompressor = _zstd.ZstdDecompressor(dict_data=dictionary)
  return compressor.compress, decompressor.decompress


def codec_available(codec):
  """Whether `compress` can run `codec` here."""
  check(codec in CODECS, "unknown codec %r; choose from %s", codec,
        ", ".join(CODECS))
  return {"brotli": _brotli, "zstd": _zstd}.get(codec, True) is not None


def general_purpose(x, num_classes, codec, per_datapoint):
  """bits/dim of `codec` ('gzip', 'bz2', 'xz', 'brotli', 'zstd') on `raw_bytes`.

  per_datapoint=True: every datapoint compressed on its own (container
  overhead paid N times), mean bits/dim; False: the whole set as one stream.
  None when the codec's package is missing.
  """
  x = _validate(x, num_classes)
  if not codec_available(codec):
    return None
  if per_datapoint:
    total = sum(len(compress(raw_bytes(xi[None], num_classes), codec))
                for xi in x)
  else:
    total = len(compress(raw_bytes(x, num_classes), codec))
  return _bits_per_dim(total, x)


def histogram_model(train, test, num_classes):
  """Test bits/dim of independent per-dimension categoricals fit on `train`.

  For each position d (all of H, W, C, or L, C) p_d(v) = (count_d(v) + 1) /
  (N_train + K): counts over `train` with add-one (Laplace) smoothing, so
  values never seen in training still get finite cost. Returns the mean of
  -log2 p_d(test[n, d]) over all test datapoints and positions.

  train: [N_train, ...], test: [N_test, ...] with the same shape per
  datapoint; ints in [0, K).
  """
  train = _validate(train, num_classes)
  test = _validate(test, num_classes)
  check(train.shape[1:] == test.shape[1:],
        "train and test datapoints differ in shape: %s vs %s",
        train.shape[1:], test.shape[1:])
  k = int(num_classes)
  d = _dims(train)
  flat = train.reshape(train.shape[0], d)
  counts = np.bincount((np.arange(d) * k + flat).reshape(-1),
                       minlength=d * k).reshape(d, k)
  log_p = np.log2(counts + 1.0) - np.log2(train.shape[0] + k)
  test_flat = test.reshape(test.shape[0], d)
  return float(-np.mean(log_p[np.arange(d), test_flat]))


# ------------------------------------------------------------------ tables ---


def table(x, num_classes, train=None):
  """All baselines on `x`: a list of (name, bits/dim or None) rows.

  The histogram row is fit on `train` and scored on `x`; it is None when
  `train` is not given.
  """
  rows = [("uncompressed (bit depth)", bit_depth(num_classes))]
  for codec in IMAGE_CODECS:
    rows.append((f"{codec} per image", image_per_image(x, num_classes, codec)))
    rows.append((f"{codec} tiled", image_tiled(x, num_classes, codec)))
  for codec in CODECS:
    rows.append((f"{codec} per datapoint",
                 general_purpose(x, num_classes, codec, per_datapoint=True)))
    rows.append((f"{codec} whole set",
                 general_purpose(x, num_classes, codec, per_datapoint=False)))
  rows.append(("histogram model",
               None if train is None
               else histogram_model(train, x, num_classes)))
  return rows


def format_table(rows, reference=None):
  """Renders (name, bits/dim or None) rows as an aligned text table.

  With `reference` (bits/dim, e.g. our model's) a ratio column is added:
  ratio = codec bits/dim / reference, so > 1 means the codec is worse.
  Missing values print as 'n/a'.
  """
  header = ["method", "bits/dim"]
  if reference is not None:
    header.append(f"ratio vs {reference:.3f}")
  body = []
  for name, value in rows:
    line = [str(name), "n/a" if value is None else f"{value:.3f}"]
    if reference is not None:
      line.append("n/a" if value is None or not reference
                  else f"{value / reference:.2f}")
    body.append(line)
  widths = [max(len(r[i]) for r in [header] + body)
            for i in range(len(header))]

  def fmt(line):
    cells = [line[0].ljust(widths[0])]
    cells += [cell.rjust(w) for cell, w in zip(line[1:], widths[1:])]
    return "  ".join(cells).rstrip()

  rule = "  ".join("-" * w for w in widths)
  return "\n".join([fmt(header), rule] + [fmt(line) for line in body])
