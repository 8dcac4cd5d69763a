"""text8-style tokenisation (spec §9.2).

Alphabet: id 0 unused, ' ' -> 1, 'a' -> 2, ..., 'z' -> 27. K = 28 output
classes; the absorbing token is 28, so the network's input vocabulary is 29.
"""
import re

import numpy as np

NUM_CLASSES = 28
ALPHABET = " abcdefghijklmnopqrstuvwxyz"  # The characters of ids 1, 2, ..., 27.
# Byte -> id, 0 for a byte outside the alphabet; id -> character: '?' for the
# unused id 0, '_' for the absorbing id 28.
_IDS = np.zeros([256], np.int32)
_IDS[np.frombuffer(ALPHABET.encode("ascii"), np.uint8)] = np.arange(1, len(ALPHABET) + 1)
_CHARS = np.frombuffer(("?" + ALPHABET + "_").encode("ascii"), np.uint8)


def normalize(text):
  """Lower-cases `text` and maps it to the text8 alphabet.

  Anything outside a-z becomes a space, and runs of spaces collapse to one.
  """
  text = re.sub(r"[^a-z]+", " ", text.lower())
  return text.strip()


def encode(text):
  """Maps normalised text (str, or ASCII bytes) to int32 token ids [len(text)].

  Raises ValueError, naming the first offending byte and its offset, for a
  character outside the alphabet.
  """
  data = text.encode("ascii") if isinstance(text, str) else text
  ids = _IDS[np.frombuffer(data, np.uint8)]
  if not ids.all():
    i = int(np.argmin(ids))
    raise ValueError(f"{data[i:i + 1]!r} at offset {i} is outside the text8 alphabet "
                     "(a-z and space)")
  return ids


def to_ascii(ids):
  """ASCII bytes of token ids (any shape, row-major), one byte each.

  ' ' and a-z for ids 1..27, '?' for the unused id 0 and '_' for the
  absorbing id 28; ids outside [0, 28] are clipped to it.
  """
  return _CHARS[np.clip(np.asarray(ids).reshape(-1), 0, NUM_CLASSES)].tobytes()


def decode(ids):
  """Maps token ids back to a string (see `to_ascii`)."""
  return to_ascii(ids).decode("ascii")


def chunk(ids, seq_len):
  """Cuts a token stream into non-overlapping [N, seq_len, 1] chunks."""
  n = len(ids) // seq_len
  return ids[:n * seq_len].reshape(n, seq_len, 1)
