"""Binarized range coding of categorical symbols with TFC's range coder.

The range coder ops come from tensorflow-compression-ops (the TF 2.17 stack)
or tensorflow-compression (TF 2.14), whichever is installed (`OPS_PACKAGE`);
importing this module registers them, which loading a codec SavedModel needs.

A symbol in [0, K) is written as NB = ceil(log2 K) binary decisions, most
significant bit first: a walk down a complete binary tree over 2^NB leaves
(the classes 0..K-1, then empty leaves). The decision nodes are numbered in
heap order: the root is node 0 and the children of node v are 2v+1 (bit 0)
and 2v+2 (bit 1), so the node at depth l below the prefix p (the first l
bits, as an integer) is 2^l - 1 + p.

The classes come with integer frequencies f[k] >= 0 (the integer
networks' `choice_frequencies`; 0 only for impossible classes).
P(bit = 0 at node v) = mass(left subtree) / mass(v) is quantized to one of
the 2^16 - 1 levels c / 2^16, c = clip(round(P * 2^16), 1, 2^16 - 1), with
integer division rounding half up: every probability that TFC's 16-bit coder
can represent (see benchmarks/coding_levels.py for the measurement against
4096 uniform or logit-spaced levels). A node whose right subtree holds no class (K not a power
of two) uses the extra row CERTAIN: bit 0 with probability 1, coded in zero
bits, which also keeps a decoder of garbage input inside [0, K).

The lookup table is fixed, so one range coder handle serves a whole stream:
`encode`/`decode` code a group of symbols [B, n] for B streams (handle [B])
or for one stream (handle []) with one TFC op per bit level, inside
tf.function and tf.while_loop alike (handles are variant tensors).
All arithmetic is int64 (sums below 2^40, one division), so the levels
depend only on the frequencies, on every device and at every batch size.
"""
import math

import numpy as np
import tensorflow as tf

try:
  import tensorflow_compression_ops as tfc_ops  # pylint: disable=g-import-not-at-top
except ImportError:
  import tensorflow_compression as tfc_ops  # pylint: disable=g-import-not-at-top
OPS_PACKAGE = tfc_ops.__name__  # What a standalone script imports to load a codec export.

PRECISION = 16
SCALE = 2**PRECISION
CERTAIN = SCALE - 1  # Table row of the certain decision; rows c - 1 hold level c.


def num_bits(num_classes):
  """NB, the binary decisions per symbol: ceil(log2 K), at least 1."""
  return max(1, math.ceil(math.log2(num_classes)))


def lookup_table():
  """The fixed CDF table int32 [2^16 + 1, 4]: rows [16, 0, c, 2^16] and CERTAIN.

  On invalid input TFC's decoder reads one entry past a row; a spare copy of
  CERTAIN at the end keeps that read inside the table.
  """
  c = tf.minimum(tf.range(1, SCALE + 2, dtype=tf.int32), SCALE)
  return tf.stack([tf.fill([SCALE + 1], PRECISION), tf.zeros([SCALE + 1], tf.int32), c,
                   tf.fill([SCALE + 1], SCALE)], axis=1)


def _certain_nodes(num_classes):
  """bool [2^NB - 1]: nodes whose right subtree contains no class < K."""
  nb = num_bits(num_classes)
  certain = []
  for depth in range(nb):
    prefix = np.arange(2**depth)
    certain.append((2 * prefix + 1) << (nb - depth - 1) >= num_classes)
  return np.concatenate(certain)


def node_levels(freqs):
  """Table rows of every decision node, int32 [..., 2^NB - 1].

  Args:
    freqs: int64 [..., K] class frequencies >= 0, each row's sum below 2^40.
  """
  num_classes = freqs.shape[-1]
  nb = num_bits(num_classes)
  pad = tf.zeros(tf.concat([tf.shape(freqs)[:-1], [2**nb - num_classes]], 0), tf.int64)
  mass = tf.concat([tf.cast(freqs, tf.int64), pad], -1)
  levels = []
  for _ in range(nb):
    left, right = mass[..., 0::2], mass[..., 1::2]
    mass = left + right
    # round(left 2^16 / mass), half up; a node without mass gets level 1.
    ratio = tf.math.floordiv(2 * SCALE * left + mass, tf.maximum(2 * mass, 1))
    levels.insert(0, tf.cast(tf.clip_by_value(ratio, 1, SCALE - 1), tf.int32) - 1)
  levels = tf.concat(levels, -1)
  return tf.where(_certain_nodes(num_classes), CERTAIN, levels)


def _row(levels, prefix, depth):
  """The table row of each symbol's decision at `depth`, int32 like prefix."""
  node = (2**depth - 1) + prefix
  return tf.gather(levels, node, batch_dims=prefix.shape.rank)


def encode(handle, symbols, freqs):
  """Appends symbols int32 [B, n] in [0, K) with freqs int64 [B, n, K] to `handle`.

  handle: range encoder handle [B] (one stream per row) or [] (one stream).
  Returns the new handle.
  """
  levels = node_levels(freqs)
  nb = num_bits(freqs.shape[-1])
  for depth in range(nb):
    prefix = tf.bitwise.right_shift(symbols, nb - depth)
    bit = tf.bitwise.bitwise_and(tf.bitwise.right_shift(symbols, nb - 1 - depth), 1)
    handle = tfc_ops.entropy_encode_index(handle, _row(levels, prefix, depth), bit)
  return handle


def decode(handle, freqs):
  """Reads symbols coded by `encode` with the same freqs [B, n, K].

  Returns (handle, symbols int32 [B, n] in [0, K)); garbage input decodes to
  some symbols in range and is caught by the caller's checksum.
  """
  levels = node_levels(freqs)
  nb = num_bits(freqs.shape[-1])
  prefix = tf.zeros(tf.shape(freqs)[:-1], tf.int32)
  for depth in range(nb):
    row = _row(levels, prefix, depth)
    handle, bit = tfc_ops.entropy_decode_index(
        handle, row, tf.shape(row)[handle.shape.rank:], tf.int32)
    # Garbage can decode to 2 (past a row's end); certain decisions stay 0.
    prefix = 2 * prefix + tf.where(row == CERTAIN, 0, tf.minimum(bit, 1))
  return handle, prefix


def encoder(shape):
  """New range encoder handles of `shape` ([] or [B]) bound to the table."""
  return tfc_ops.create_range_encoder(shape, lookup_table())


def decoder(strings):
  """Range decoder handles over `strings` (scalar or [B])."""
  return tfc_ops.create_range_decoder(strings, lookup_table())


def finish_encoder(handle):
  """The coded strings, same shape as the handle."""
  return tfc_ops.entropy_encode_finalize(handle)


def finish_decoder(handle):
  """TFC's weak consistency check of each decoder, bool like the handle."""
  return tfc_ops.entropy_decode_finalize(handle)
