"""Dataset registry: every dataset is int32 arrays split into train/valid/test.

| name    | shape       | K  | source                                            |
|---------|-------------|----|---------------------------------------------------|
| digits  | (8, 8, 1)   | 17 | scikit-learn's bundled 8x8 digits (embedded)      |
| text    | (L, 1)      | 28 | English text bundled with Python (embedded)       |
| text_bytes | (L, 1)   | 257| raw bytes of Python's docs and stdlib sources     |
|         |             |    | (bytes 0..255, and 256 pads a short record)       |
|         |             |    | (embedded; split by document: data/byte_text.py)  |
| text8   | (L, 1)      | 28 | a local `text8` or `text8.zip` file               |
| cifar10 | (32, 32, 3) | 256| tfds `cifar10` under --data_dir, or an .npz file  |
| photos  | (P, P, 3)   | 256| patches of the 10 colour photographs that         |
|         |             |    | scikit-learn (2) and scikit-image (8, one a       |
|         |             |    | stereo pair) bundle (embedded; P = 16 or 32;      |
|         |             |    | split by region: data/photos.py)                  |

Nothing is ever downloaded; a missing file raises `UserError` saying where
to put the data.
"""
import dataclasses
import os
import zipfile

import numpy as np

from tf_ardm.data import byte_text
from tf_ardm.data import photos as photos_lib
from tf_ardm.data import text as text_lib
from tf_ardm.errors import UserError

NAMES = ("digits", "text", "text_bytes", "text8", "cifar10", "photos")
# Made from the running Python's own files (its documentation topics and
# stdlib sources), which change between Python versions: so do their splits,
# and a model's figures on them.
FROM_PYTHON = ("text", "text_bytes")


@dataclasses.dataclass(frozen=True)
class Dataset:
  """A dataset in memory.

  Attributes:
    name: registry name.
    kind: 'image' or 'text'.
    num_classes: K, the number of data values; data lie in [0, K).
    splits: {'train', 'valid'?, 'test'} -> int32 array [N, *shape].
    pad: text: the class that fills a short record's chunk after its end
      (byte_text.PAD), or None; training then pads `pad_fraction` of its
      crops at a random length (pipeline.train_dataset).
    pad_fraction: that fraction.
  """
  name: str
  kind: str
  num_classes: int
  splits: dict
  pad: int = None
  pad_fraction: float = 0.0

  @property
  def shape(self):
    return tuple(self.splits["train"].shape[1:])


def _digits():
  from sklearn import datasets as sk_datasets  # pylint: disable=g-import-not-at-top
  images = sk_datasets.load_digits().images.astype(np.int32)[..., None]
  index = np.arange(len(images))
  return Dataset("digits", "image", 17, {
      "train": images[index % 5 != 0],
      "test": images[index % 5 == 0],
  })


def _split_text(name, ids, seq_len, fractions):
  """Splits a token stream by offset into train/valid/test chunks."""
  n = len(ids)
  a, b = int(n * fractions[0]), int(n * (fractions[0] + fractions[1]))
  splits = {
      "train": text_lib.chunk(ids[:a], seq_len),
      "valid": text_lib.chunk(ids[a:b], seq_len),
      "test": text_lib.chunk(ids[b:], seq_len),
  }
  _check_chunks(name, splits, f"--seq_len={seq_len} characters")
  return Dataset(name, "text", text_lib.NUM_CLASSES, splits)


def _check_chunks(name, splits, what):
  """UserError naming the first split of text chunks that is empty."""
  for split, chunks in splits.items():
    if not len(chunks):
      raise UserError(f"{name}: the {split} split has no chunk of {what}")


def _embedded_text(seq_len):
  from pydoc_data import topics  # pylint: disable=g-import-not-at-top
  corpus = " ".join(topics.topics[key] for key in sorted(topics.topics))
  ids = text_lib.encode(text_lib.normalize(corpus))
  return _split_text("text", ids, seq_len, (0.9, 0.05))


def _text_bytes(seq_len):
  """Bytes of Python's documentation and stdlib sources, split by document."""
  splits = {name: byte_text.chunk(data, seq_len)
            for name, data in byte_text.split_bytes().items()}
  _check_chunks("text_bytes", splits, f"--seq_len={seq_len} bytes")
  return Dataset("text_bytes", "text", byte_text.NUM_CLASSES, splits, byte_text.PAD,
                 byte_text.PAD_FRACTION)


def is_bytes(config):
  """Whether a model codes raw bytes: a text model with K = 257 (the byte
  values and byte_text.PAD)."""
  return config.kind == "text" and config.num_classes == byte_text.NUM_CLASSES


def decode_text(ids, config):
  """A text model's datapoint (ids, any shape) as a str for display: bytes
  as UTF-8 (invalid sequences replaced, PAD dropped), text8 ids as letters."""
  if is_bytes(config):
    return byte_text.to_bytes(ids).decode("utf-8", "replace")
  return text_lib.decode(ids)


def _text8(data_dir, seq_len):
  candidates = [data_dir] if data_dir and os.path.isfile(data_dir) else [
      os.path.join(data_dir or ".", f) for f in ("text8", "text8.zip")]
  path = next((p for p in candidates if os.path.isfile(p)), None)
  if path is None:
    raise UserError(
        f"text8 not found (looked for {', '.join(candidates)}): download "
        "http://mattmahoney.net/dc/text8.zip and pass --data_dir=DIR "
        "containing text8 or text8.zip")
  try:
    if path.endswith(".zip"):
      with zipfile.ZipFile(path) as archive:
        raw = archive.read("text8")
    else:
      with open(path, "rb") as f:
        raw = f.read()
    ids = text_lib.encode(raw)
  except (zipfile.BadZipFile, KeyError, ValueError) as e:
    raise UserError(f"{path} is not a valid text8 file: {e}") from e
  # Spec §9.2: 90M / 5M / 5M characters (the same 90/5/5 fractions).
  return _split_text("text8", ids, seq_len, (0.9, 0.05))


def _cifar10(data_dir):
  hint = ("CIFAR-10 not found: run `tfds build cifar10 --data_dir=DIR` on a "
          "machine with internet access and pass --data_dir=DIR, or pass "
          "--data_dir=FILE.npz with uint8 arrays x_train [N,32,32,3] and "
          "x_test")
  if data_dir and data_dir.endswith(".npz"):
    if not os.path.isfile(data_dir):
      raise UserError(f"{data_dir} does not exist. {hint}")
    try:
      with np.load(data_dir) as f:
        splits = {"train": f["x_train"], "test": f["x_test"]}
    except (KeyError, ValueError, OSError) as e:
      raise UserError(f"{data_dir} is not a CIFAR-10 .npz file: {e}") from e
  else:
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
    try:
      builder = tfds.builder("cifar10", data_dir=data_dir)
      if not builder.is_prepared():
        raise UserError(f"no prepared tfds cifar10 under "
                        f"{data_dir or tfds.core.constants.DATA_DIR}. {hint}")
      splits = {split: tfds.as_numpy(builder.as_dataset(
          split=split, batch_size=-1, download=False))["image"]
                for split in ("train", "test")}
    except UserError:
      raise
    except Exception as e:  # tfds raises many types for a bad directory.
      raise UserError(f"cannot read tfds cifar10 from {data_dir}: {e}") from e
  for split, x in splits.items():
    if x.shape[1:] != (32, 32, 3):
      raise UserError(f"CIFAR-10 {split} images have shape {x.shape[1:]}, "
                      "expected (32, 32, 3)")
  return Dataset("cifar10", "image", 256,
                 {k: v.astype(np.int32) for k, v in splits.items()})


def _photos(patch_size):
  if patch_size not in photos_lib.PATCH_SIZES:
    raise UserError(f"photos patches are {' or '.join(map(str, photos_lib.PATCH_SIZES))} "
                    f"pixels wide, not {patch_size}")
  return Dataset("photos", "image", 256, photos_lib.splits(patch_size))


def load(name, data_dir=None, seq_len=250, patch_size=16):
  """Loads dataset `name` into memory; see the module docstring."""
  if name == "digits":
    return _digits()
  if name == "text":
    return _embedded_text(seq_len)
  if name == "text_bytes":
    return _text_bytes(seq_len)
  if name == "text8":
    return _text8(data_dir, seq_len)
  if name == "cifar10":
    return _cifar10(data_dir)
  if name == "photos":
    return _photos(patch_size)
  raise UserError(f"unknown dataset {name!r}; choose one of {', '.join(NAMES)}")


def split(config, name, data_dir=None, limit=None):
  """The split `name` of a model's dataset, int32 [N, *shape] (at most `limit`)."""
  seq_len = config.shape[0] if config.kind == "text" else 250
  data = load(config.dataset, data_dir, seq_len, patch_size=config.shape[0])
  if name not in data.splits:
    raise UserError(f"{config.dataset} has no {name} split")
  return data.splits[name][:limit]
