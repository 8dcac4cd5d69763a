"""Byte-level text that every Python installation ships (the `text_bytes` dataset).

Data values are raw bytes 0..255 and PAD = 256, which fills the chunk of a
short record after its end: K = 257 (no byte value is reserved, so every
file codes exactly). The absorbing token is 257, so the network's input
vocabulary is 258. Training pads a fraction PAD_FRACTION of its crops at a
random length (pipeline.train_dataset), so that the model learns that a
record ends and its padding costs next to nothing. The corpus is real text
with case, punctuation, digits and newlines:

  * Python's documentation topics (`pydoc_data.topics`, the text `help()`
    shows), one document per topic;
  * the standard library's Python sources with their docstrings and comments,
    one document per file (`sysconfig`'s stdlib directory; not the `test`
    packages, `idlelib`, `site-packages` or anything outside the stdlib).

Each document belongs to one split for good, by a hash of its name (the
topic key, or the file's path relative to the stdlib): 5% test, 5% valid,
the rest train, so no test text is ever trained on. Within a split the
documents are joined in name order, separated by one NUL byte (which no
document contains), and cut into chunks of `seq_len` bytes.

The stdlib differs a little between Python versions, so the corpus does too
(`corpus_summary` names what was read). Text that moved to other names
between the supported Pythons (3.11 and 3.12) has all of its names in one
group of MOVED, and is held out only where every name of its group hashes to
the same held-out split; otherwise it is training text on every Python. So
a model trained on one of these Pythons has seen no held-out text of the
other. The one such move is `zipfile`, a module in 3.11 and a package in
3.12: 90% of the long lines of 3.11's `stdlib/zipfile.py` recur in 3.12's
`stdlib/zipfile/__init__.py`, and 80% of those of 3.12's
`stdlib/zipfile/_path/__init__.py` recur in 3.11's `stdlib/zipfile.py`. The
groups were found by comparing, for every held-out document of each Python,
the share of its lines of 30 or more characters that recur in the other
Python's training split with the share that recurs in its own (shared
boilerplate such as the codec tables): after zipfile, the largest excess is
3 lines of 39.
"""
import hashlib
import os
import sysconfig

import numpy as np

from tf_ardm.data import text as text_lib

PAD = 256
NUM_CLASSES = 257
# The fraction of training crops cut short and padded with PAD.
PAD_FRACTION = 0.25
SEPARATOR = b"\0"
# Hash buckets of a document name: 0 test, 1 valid, 2..19 train.
_BUCKETS = 20
SPLIT_OF_BUCKET = {0: "test", 1: "valid"}
# Directories of the stdlib left out: tests (some hold binary or deliberately
# broken data), IDLE's GUI code, and installed packages.
_EXCLUDED_DIRS = ("test", "tests", "idlelib", "site-packages", "dist-packages", "__pycache__")


# Groups of document names that hold the same text in the supported Pythons
# (3.11 and 3.12), and the group of each of those names.
MOVED = [("stdlib/zipfile.py", "stdlib/zipfile/__init__.py", "stdlib/zipfile/_path/__init__.py")]
GROUP_OF = {name: names for names in MOVED for name in names}


def _hashed_split(name):
  bucket = int.from_bytes(hashlib.sha256(name.encode("utf-8")).digest()[:8], "big") % _BUCKETS
  return SPLIT_OF_BUCKET.get(bucket, "train")


def split_of(name):
  """'train', 'valid' or 'test' for a document name (str), fixed for good:
  the split its name hashes to, or 'train' where the names of its group in
  MOVED do not all hash to one split."""
  splits = {_hashed_split(n) for n in GROUP_OF.get(name, (name,))}
  return splits.pop() if len(splits) == 1 else "train"


def documents():
  """{name: bytes} of the corpus: 'topics/<key>' and 'stdlib/<relative path>'."""
  from pydoc_data import topics  # pylint: disable=g-import-not-at-top
  docs = {f"topics/{key}": text.encode("utf-8") for key, text in topics.topics.items()}
  root = sysconfig.get_paths()["stdlib"]
  for folder, subdirs, files in os.walk(root):
    subdirs[:] = sorted(d for d in subdirs if d not in _EXCLUDED_DIRS)
    for name in sorted(files):
      if name.endswith(".py"):
        path = os.path.join(folder, name)
        with open(path, "rb") as f:
          data = f.read()
        if SEPARATOR not in data and data:
          docs["stdlib/" + os.path.relpath(path, root).replace(os.sep, "/")] = data
  return docs


def split_bytes(docs=None):
  """{'train', 'valid', 'test'} -> bytes: each split's documents in name
  order, joined by SEPARATOR."""
  docs = documents() if docs is None else docs
  parts = {"train": [], "valid": [], "test": []}
  for name in sorted(docs):
    parts[split_of(name)].append(docs[name])
  return {split: SEPARATOR.join(texts) for split, texts in parts.items()}


def chunk(data, seq_len):
  """bytes -> int32 [N, seq_len, 1] non-overlapping chunks (the tail dropped)."""
  return text_lib.chunk(np.frombuffer(data, np.uint8).astype(np.int32), seq_len)


def to_bytes(values):
  """int32 byte values (any shape, row-major) -> bytes; PAD and any value
  outside [0, 255] are dropped (as in a sample's padded tail)."""
  values = np.asarray(values).reshape(-1)
  return values[(values >= 0) & (values < PAD)].astype(np.uint8).tobytes()


def pad_chunks(data, seq_len):
  """bytes -> int32 [N, seq_len, 1], N = ceil(len / seq_len), the last chunk
  filled with PAD after the data (N = 0 for empty data)."""
  values = np.frombuffer(data, np.uint8)
  n = -(-len(values) // seq_len)
  padded = np.full([n * seq_len], PAD, np.int32)
  padded[:len(values)] = values
  return padded.reshape(n, seq_len, 1)


def corpus_summary(docs=None):
  """A line naming the corpus: documents and bytes per split, and the Python."""
  import sys  # pylint: disable=g-import-not-at-top
  docs = documents() if docs is None else docs
  counts = {"train": [0, 0], "valid": [0, 0], "test": [0, 0]}
  for name, data in docs.items():
    count = counts[split_of(name)]
    count[0] += 1
    count[1] += len(data)
  splits = ", ".join(f"{s} {n} documents / {b} bytes" for s, (n, b) in counts.items())
  return f"text_bytes from Python {sys.version.split()[0]}: {splits}"
