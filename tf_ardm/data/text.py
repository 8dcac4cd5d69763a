"""text8-style tokenisation (spec §9.2).

Alphabet: id 0 unused, ' ' -> 1, 'a' -> 2, ..., 'z' -> 27. K = 28 output
classes; the absorbing token is 28, so the network's input vocabulary is 29.
"""
import re

import numpy as np

NUM_CLASSES = 28
_CHARS = " abcdefghijklmnopqrstuvwxyz"


def normalize(text):
  """Lower-cases `text` and maps it to the text8 alphabet.

  Anything outside a-z becomes a space, and runs of spaces collapse to one.
  """
  text = re.sub(r"[^a-z]+", " ", text.lower())
  return text.strip()


def encode(text):
  """Maps a normalised string to int32 token ids, shape [len(text)]."""
  data = np.frombuffer(text.encode("ascii"), dtype=np.uint8).astype(np.int32)
  ids = data - ord("a") + 2
  ids[data == ord(" ")] = 1
  if np.any((ids < 1) | (ids > 27)):
    raise ValueError("text contains characters outside a-z and space")
  return ids


def decode(ids):
  """Maps token ids back to a string; the absorbing id 28 prints as '_'."""
  table = np.array(list("?" + _CHARS + "_"))
  return "".join(table[np.clip(np.asarray(ids).reshape(-1), 0, 28)])


def chunk(ids, seq_len):
  """Cuts a token stream into non-overlapping [N, seq_len, 1] chunks."""
  n = len(ids) // seq_len
  return ids[:n * seq_len].reshape(n, seq_len, 1)
