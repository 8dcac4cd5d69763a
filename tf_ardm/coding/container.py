"""The .ardm files of `tf_ardm.compress` and `tf_ardm.decompress`.

An input file becomes datapoints of the model's shape:
  * image models: a PNG (grayscale, 8 or 16 bits, for 1-channel models;
    8-bit RGB for 3-channel models: no alpha, palette or 16-bit samples;
    pixel values are the data, so they must be < K: no rescaling), or an NPY
    [H, W] / [H, W, C] of integers in [0, K), of any size. It is tiled
    row-major into model-sized patches; the right and bottom edges are
    padded by repeating the last column / row.
  * text8 models (K = 28): ASCII text over the text8 alphabet (a-z and
    space; one trailing newline is kept), cut into chunks of the model's
    length, the last padded with spaces. With `normalize`, any text is first
    mapped to that alphabet (lossy: decompression gives the normalised
    text). An NPY [L] of token ids works too.
  * byte models (K = 257, datasets.is_bytes): any file at all, whatever its
    name or content, as its raw bytes, cut into chunks of the model's
    length, the last filled with the PAD class after the data
    (byte_text.pad_chunks); the true length is recorded. An empty file has
    no datapoints and no streams. Where the coded file would be larger
    than the bytes themselves (random or already compressed data), the file
    is stored instead (kind 5): the same header, then the bytes as they are,
    so no file grows by more than the header and a CRC (about 18 bytes).
  * any other model: an NPY [N, *shape] holds N datapoints as they are.

File layout, version 2 (integers are LEB128 varints):
  4      magic b"ARDM"
  1      container version (2)
  1      kind: 1 PNG, 2 NPY, 3 text, 4 bytes, 5 stored bytes
  ...    rank, then the original dims (PNG [H, W, C], NPY its shape, text
         and bytes [L])
  ...    NPY: its dtype (numpy dtype.str, length-prefixed); text: 1 if a
         trailing newline was dropped, else 0
  1      the arithmetic id of the streams (tf_ardm.coding.stream.ARITHMETICS)
  4      the model fingerprint of the streams (tf_ardm.coding.codec.fingerprint)
  ...    number of streams, then each stream's length and the stream, in the
         lean framing of tf_ardm.coding.stream (the model is identified once,
         above); stored bytes: instead, the CRC-32 (zlib's, 4 bytes, big
         endian) of the [L] bytes, then the bytes themselves, to the end
         of the file (the model still names the file, so that a file is
         decoded with the model that wrote it and no other)
`unpack` checks the arithmetic id; whether the fingerprint is the model's
is for the caller to check, with `check_model`. Version-1 files (full
streams of the float arithmetic) are refused with a one-line pointer to the
codec that reads them.
"""
import dataclasses
import io
import math
import os
import re
import zlib

import numpy as np
from PIL import Image

from tf_ardm import atomic
from tf_ardm.coding import stream
from tf_ardm.coding import varint
from tf_ardm.data import byte_text
from tf_ardm.data import datasets
from tf_ardm.data import text as text_lib
from tf_ardm.data import tiles
from tf_ardm.data import validation
from tf_ardm.errors import UserError, check_writable

MAGIC = b"ARDM"
VERSION = 2
PNG, NPY, TEXT, BYTES, STORED = 1, 2, 3, 4, 5
_MAX_VARINT = 10  # Bytes of a varint up to 2^70.
_DTYPE = re.compile(r"\|b1|[|<>][iu][1248]")  # NPY dtypes a container may name.
_SPACE = int(text_lib.encode(" ")[0])  # Pads the last text chunk.


@dataclasses.dataclass
class Original:
  """What decompression needs to rebuild the input file.

  Attributes:
    kind: PNG, NPY, TEXT, BYTES or STORED.
    shape: original dims (PNG [H, W, C], NPY its shape, text and bytes [L]).
    dtype: NPY dtype string ('' otherwise).
    newline: text ended with a newline.
    raw: BYTES and STORED: the file's bytes (b'' otherwise; BYTES files
      read back from a container have none: their streams hold them).
  """
  kind: int
  shape: tuple
  dtype: str = ""
  newline: bool = False
  raw: bytes = dataclasses.field(default=b"", repr=False)


# ------------------------------------------------------------ file -> data ---


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_COLOURS = {0: "grayscale", 2: "RGB", 3: "palette", 4: "grayscale+alpha", 6: "RGBA"}


def _png_format(path):
  """(bit depth, colour type) from a PNG's IHDR chunk, or None when the
  file does not start like a PNG (Pillow then says what is wrong). Pillow
  reads a 16-bit RGB PNG as 8-bit RGB, so the mode alone cannot tell."""
  with open(path, "rb") as f:
    head = f.read(26)
  if len(head) < 26 or head[:8] != _PNG_SIGNATURE or head[12:16] != b"IHDR":
    return None
  return head[24], head[25]


def _accepted_png(config):
  """What an image model's PNGs must be: (Pillow modes, the phrase for errors)."""
  if config.shape[-1] == 1:
    return ("L", "I;16", "I"), "1-channel images: a grayscale PNG (8 or 16 bits)"
  if config.shape[-1] == 3:
    return ("RGB",), (f"{min(config.num_classes, 256).bit_length() - 1}-bit RGB images: "
                      "an 8-bit RGB PNG (no alpha, no palette, not grayscale)")
  return (), f"{config.shape[-1]}-channel images: no PNG holds them"


def _read_png(path, config):
  modes, accepted = _accepted_png(config)
  try:
    png_format = _png_format(path)
    with Image.open(path) as image:
      image.load()
      mode = image.mode
      x = np.asarray(image)
  except (OSError, ValueError) as e:
    raise UserError(f"{path}: not a readable PNG: {e}") from e
  bit_depth, colour = png_format or (None, None)
  if mode not in modes or (mode == "RGB" and bit_depth != 8):
    got = (f"{'an' if bit_depth == 8 else 'a'} {bit_depth}-bit "
           f"{_PNG_COLOURS.get(colour, f'colour type {colour}')} PNG"
           if png_format else f"a PNG of mode {mode}")
    raise UserError(f"{path}: {got}; this model codes {accepted}, or an NPY array")
  x = validation.check_values(x.reshape(x.shape[0], x.shape[1], config.shape[-1]),
                              config.num_classes, path)
  return x, Original(PNG, x.shape)


def _read_npy(path, config):
  try:
    x = np.load(path, allow_pickle=False)
  except (OSError, ValueError) as e:
    raise UserError(f"{path}: not a readable .npy file: {e}") from e
  return validation.check_values(x, config.num_classes, path), Original(NPY, x.shape, x.dtype.str)


def _read_text(path, normalize):
  with open(path, "rb") as f:
    raw = f.read()
  if normalize:
    ids = text_lib.encode(text_lib.normalize(raw.decode("utf-8", "replace")))
    return ids, Original(TEXT, (len(ids),))
  newline = raw.endswith(b"\n")
  try:
    ids = text_lib.encode(raw[:-1] if newline else raw)
  except ValueError as e:
    raise UserError(f"{path}: {e}; pass --normalize to map the text to it (lossy)") from None
  return ids, Original(TEXT, (len(ids),), newline=newline)


def _read_bytes(path):
  try:
    with open(path, "rb") as f:
      raw = f.read()
  except OSError as e:
    raise UserError(f"{path}: cannot read: {e.strerror}") from None
  return np.frombuffer(raw, np.uint8), Original(BYTES, (len(raw),), raw=raw)


def _chunk(ids, length):
  """Token ids [L] -> [N, length, 1], the last chunk padded with spaces."""
  n = -(-len(ids) // length)
  padded = np.full([n * length], _SPACE, np.int64)
  padded[:len(ids)] = ids
  return padded.reshape(n, length, 1)


def to_datapoints(x, config, path):
  """The datapoints int32 [N, *shape] of an input array (see the module doc)."""
  shape = tuple(config.shape)
  if x.ndim == len(shape) + 1 and x.shape[1:] == shape:
    return x.astype(np.int32)
  if config.kind == "image":
    if x.ndim == 2 and shape[-1] == 1:
      x = x[..., None]
    if x.ndim != 3 or x.shape[-1] != shape[-1] or not x.size:
      raise UserError(f"{path}: expected a non-empty image [H, W, {shape[-1]}] or "
                      f"datapoints [N, {', '.join(map(str, shape))}], got {list(x.shape)}")
    return tiles.patches(x, shape[:2]).astype(np.int32)
  if x.ndim == 2 and x.shape[1] == 1:
    x = x[:, 0]
  if x.ndim != 1:
    raise UserError(f"{path}: expected text, token ids [L] or datapoints "
                    f"[N, {', '.join(map(str, shape))}], got {list(x.shape)}")
  if datasets.is_bytes(config):
    return byte_text.pad_chunks(x.astype(np.uint8).tobytes(), shape[0])
  return _chunk(x, shape[0]).astype(np.int32)


def read(path, config, normalize=False):
  """(datapoints int32 [N, *shape], Original) of one input file."""
  ext = os.path.splitext(path)[1].lower()
  if datasets.is_bytes(config):
    x, original = _read_bytes(path)
  elif ext == ".png":
    x, original = _read_png(path, config)
  elif ext == ".npy":
    x, original = _read_npy(path, config)
  elif config.kind == "text":
    x, original = _read_text(path, normalize)
  else:
    raise UserError(f"{path}: image models compress .png and .npy files")
  return to_datapoints(x, config, path), original


# ------------------------------------------------------------ data -> file ---


def rebuild(datapoints, original, config, path="the file"):
  """The output file's bytes from decoded datapoints [N, *shape] (path: the
  .ardm file, for errors)."""
  shape = tuple(original.shape)
  if original.kind == STORED:
    return original.raw
  if original.kind == BYTES:
    values = datapoints.reshape(-1)[:shape[0]]
    if len(values) != shape[0] or values.max(initial=0) >= byte_text.PAD:
      raise UserError(f"{path}: corrupt .ardm file (the decoded bytes end early)")
    return byte_text.to_bytes(values)
  if original.kind == TEXT:
    ids = datapoints.reshape(-1)[:shape[0]]
    return text_lib.decode(ids).encode("ascii") + (b"\n" if original.newline else b"")
  if len(shape) == len(config.shape) + 1 and shape[1:] == tuple(config.shape):
    x = datapoints
  elif config.kind == "image":
    x = tiles.from_patches(datapoints, shape)
  else:
    x = datapoints.reshape(-1)[:int(np.prod(shape))]
  x = x.reshape(shape)
  buffer = io.BytesIO()
  if original.kind == NPY:
    np.save(buffer, x.astype(np.dtype(original.dtype)), allow_pickle=False)
  else:
    channels = shape[-1]
    if channels == 3:
      image = Image.fromarray(x.astype(np.uint8), "RGB")
    elif config.num_classes <= 256:
      image = Image.fromarray(x[..., 0].astype(np.uint8), "L")
    else:
      image = Image.fromarray(x[..., 0].astype(np.uint16), "I;16")
    image.save(buffer, format="PNG")
  return buffer.getvalue()


# ---------------------------------------------------------------- framing ---


class _Reader:
  """Reads varints and byte strings from a container; UserError at the end."""

  def __init__(self, data, path):
    self.data, self.pos, self.path = data, 0, path

  def take(self, size):
    if self.pos + size > len(self.data):
      raise UserError(f"{self.path}: truncated .ardm file")
    out = self.data[self.pos:self.pos + size]
    self.pos += size
    return out

  def integer(self):
    try:
      value, self.pos = varint.decode(self.data, self.pos, _MAX_VARINT)
    except EOFError:
      raise UserError(f"{self.path}: truncated .ardm file") from None
    except ValueError:
      raise UserError(f"{self.path}: corrupt .ardm file (bad integer)") from None
    return value


def pack(original, streams, fingerprint, arithmetic=stream.ARITHMETIC):
  """The container bytes for an Original and its lean ARDM streams (bytes each).

  fingerprint: the model's stream.FINGERPRINT_BYTES bytes; arithmetic: the
  id (int in [0, 256)) of the arithmetic that made the streams. A BYTES
  original whose coded container would be larger than its stored one
  (original.raw as it is) is packed stored.
  """
  if original.kind == STORED:
    return (_pack(original, [], fingerprint, arithmetic)
            + zlib.crc32(original.raw).to_bytes(4, "big") + original.raw)
  coded = _pack(original, streams, fingerprint, arithmetic)
  if original.kind == BYTES and original.raw:
    stored = Original(STORED, original.shape, raw=original.raw)
    # The stored file's size from its header alone: the CRC and the bytes follow.
    if len(_pack(stored, [], fingerprint, arithmetic)) + 4 + len(original.raw) < len(coded):
      return pack(stored, [], fingerprint, arithmetic)
  return coded


def is_stored(data):
  """Whether container bytes hold a stored file (kind STORED)."""
  return data[:4] == MAGIC and data[5:6] == bytes([STORED])


def _pack(original, streams, fingerprint, arithmetic):
  """The container of `original` and its streams; for STORED, its header only
  (up to the fingerprint: the CRC and the bytes follow it)."""
  if len(fingerprint) != stream.FINGERPRINT_BYTES or not 0 <= arithmetic < 256:
    raise ValueError(f"bad model identity: fingerprint {fingerprint!r}, arithmetic "
                     f"{arithmetic}")
  out = [MAGIC, bytes([VERSION, original.kind]), varint.encode(len(original.shape))]
  out += [varint.encode(int(d)) for d in original.shape]
  if original.kind == NPY:
    out += [varint.encode(len(original.dtype)), original.dtype.encode("ascii")]
  if original.kind == TEXT:
    out.append(bytes([int(original.newline)]))
  out += [bytes([arithmetic]), bytes(fingerprint)]
  if original.kind == STORED:
    return b"".join(out)
  out.append(varint.encode(len(streams)))
  for data in streams:
    out += [varint.encode(len(data)), data]
  return b"".join(out)


def unpack(data, path):
  """(Original, fingerprint, streams) of container bytes; UserError when malformed.

  fingerprint: the 4 bytes the file names its model by; streams: lean ARDM
  streams (bytes). Raises UserError for a version-1 file and for streams of
  an arithmetic other than stream.ARITHMETIC.
  """
  reader = _Reader(data, path)
  if reader.take(4) != MAGIC:
    raise UserError(f"{path}: not an .ardm file (bad magic bytes)")
  version, kind = reader.take(2)
  if version == 1:
    raise UserError(f"{path}: a version-1 .ardm file: its streams are format 1, made with "
                    "the float arithmetic, which decodes only on the TF build and device "
                    f"kind that wrote it; this tool reads version {VERSION}; read it with "
                    f"{stream.FORMAT_1_READER}")
  if version != VERSION:
    raise UserError(f"{path}: .ardm container version {version} is not supported "
                    f"(this tool reads version {VERSION})")
  if kind not in (PNG, NPY, TEXT, BYTES, STORED):
    raise UserError(f"{path}: corrupt .ardm file (unknown kind {kind})")
  rank = reader.integer()
  if rank > 32 or (kind in (TEXT, BYTES, STORED) and rank != 1):
    raise UserError(f"{path}: corrupt .ardm file (rank {rank})")
  original = Original(kind, tuple(reader.integer() for _ in range(rank)))
  if kind == NPY:
    original.dtype = reader.take(reader.integer()).decode("ascii", "replace")
    # The dtype.str of an integer or bool array; np.dtype itself would parse
    # (and may choke on) any string.
    if not _DTYPE.fullmatch(original.dtype):
      raise UserError(f"{path}: corrupt .ardm file (dtype {original.dtype!r})")
  if kind == TEXT:
    original.newline = bool(reader.take(1)[0])
  arithmetic = reader.take(1)[0]
  if arithmetic != stream.ARITHMETIC:
    raise UserError(f"{path}: {stream.unknown_arithmetic(arithmetic)}")
  fingerprint = reader.take(stream.FINGERPRINT_BYTES)
  if kind == STORED:
    crc = int.from_bytes(reader.take(4), "big")
    original.raw = reader.take(original.shape[0])
    if zlib.crc32(original.raw) != crc:
      raise UserError(f"{path}: corrupt .ardm file (the stored bytes fail their CRC)")
    streams = []
  else:
    streams = [reader.take(reader.integer()) for _ in range(reader.integer())]
  if reader.pos != len(data):
    raise UserError(f"{path}: corrupt .ardm file ({len(data) - reader.pos} bytes "
                    "after the last stream)")
  return original, fingerprint, streams


def check_model(fingerprint, expected, path):
  """UserError unless a file's fingerprint (bytes) is the model's `expected`."""
  if fingerprint != expected:
    raise UserError(f"{path}: {stream.FOREIGN}")


def _expected_count(original, config):
  """The number of datapoints of `original` under `config` (-1: none fits)."""
  if original.kind == STORED:
    return 0
  shape, model = tuple(original.shape), tuple(config.shape)
  if len(shape) == len(model) + 1 and shape[1:] == model:
    return shape[0]
  if original.kind == TEXT or config.kind == "text":
    return -(-math.prod(shape) // model[0])  # Exact for any dims.
  return -(-shape[0] // model[0]) * -(-shape[1] // model[1]) if len(shape) >= 2 else -1


def check_count(original, config, count, path):
  """UserError unless `count` datapoints fit the original's shape (none for
  stored bytes)."""
  if count != _expected_count(original, config):
    raise UserError(f"{path}: corrupt .ardm file ({count} datapoints for an original "
                    f"of shape {list(original.shape)})")


# ------------------------------------------------------------------ paths ---


def plan(in_path, out_path, rename, select=None, overwrite=False):
  """The jobs [(source path, output path relative to out_path or '')] of a command.

  A file maps to out_path itself (''); a directory maps every file below it
  that `select(relative path)` accepts to rename(relative path) below
  out_path. Raises UserError for a missing input, an existing output (unless
  overwrite) or an output inside the input directory.
  """
  if not os.path.exists(in_path):
    raise UserError(f"{in_path} does not exist")
  if os.path.exists(out_path) and not overwrite:
    raise UserError(f"{out_path} exists; remove it or pass --overwrite")
  if os.path.abspath(in_path) == os.path.abspath(out_path):
    raise UserError("the input and the output are the same path")
  check_writable(out_path, "the output")
  if not os.path.isdir(in_path):
    if os.path.isdir(out_path):
      raise UserError(f"{out_path} is a directory; give the output file's path")
    return [(in_path, "")]
  root = os.path.abspath(in_path) + os.sep
  if os.path.abspath(out_path).startswith(root):
    raise UserError(f"the output directory {out_path} lies inside the input {in_path}")
  jobs = []
  for directory, dirs, files in os.walk(in_path):
    dirs.sort()
    for name in sorted(files):
      rel = os.path.relpath(os.path.join(directory, name), in_path)
      if select is None or select(rel):
        jobs.append((os.path.join(directory, name), rename(rel)))
  if not jobs:
    raise UserError(f"{in_path} holds no input files")
  return jobs


def commit(outputs, out_path):
  """Writes {relative path: bytes} below out_path ('' is out_path itself).

  All or nothing: a directory is assembled next to out_path and renamed into
  place; an existing out_path is replaced only then.
  """
  if list(outputs) == [""]:
    with atomic.file(out_path) as tmp, open(tmp, "wb") as f:
      f.write(outputs[""])
    return
  with atomic.directory(out_path) as tmp:
    for rel, data in outputs.items():
      path = os.path.join(tmp, rel)
      os.makedirs(os.path.dirname(path), exist_ok=True)
      with open(path, "wb") as f:
        f.write(data)


def describe(name, values, file_bytes, stream_bytes, exact_bits, budget, stages=1,
             stored=False):
  """The -v line of one file.

  values: original values; file_bytes: the .ardm size; stream_bytes: its
  ARDM streams; exact_bits: the model's exact code length of its datapoints
  under the same order and policy; budget: network calls per stage of an
  S = `stages` stage model; stored: the file holds its bytes as they are.
  """
  per_dim = 8.0 * file_bytes / max(values, 1)
  if stored:  # Decompression knows no streams (stream_bytes None).
    code = ("" if stream_bytes is None else
            f": its streams, {8.0 * stream_bytes / max(values, 1):.4f} bits/dim, are no smaller")
    return (f"{name}: {values} values, {file_bytes} bytes = {per_dim:.4f} bits/dim; "
            f"stored as it is{code}")
  ratio = 8.0 * stream_bytes / exact_bits if exact_bits else float("nan")
  return (f"{name}: {values} values, {file_bytes} bytes = {per_dim:.4f} bits/dim; "
          f"model exact code length {exact_bits / max(values, 1):.4f} bits/dim "
          f"(streams/exact {ratio:.4f}); budget {budget} = {budget * stages} network "
          "calls per datapoint" + (f" ({stages} stages)" if stages > 1 else ""))
