"""Lossless codec: range coder, stream format, round trips, determinism, fuzzing,
Upscale models, CLIs.

The codec computes its coding frequencies with the integer networks
(tf_ardm.networks.integer), so the tests check bytes for equality across
batch sizes, max_batch, XLA on and off and a fresh process, and the payload
against the integer model's code length (Coder.integer_bits).
"""
import contextlib
import glob
import io
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import zlib

import numpy as np
from PIL import Image
import pytest
import tensorflow as tf

from conftest import ConstantLogits, integer_logits, tiny_config
from tf_ardm.models import checkpoints
from tf_ardm.coding import codec as codec_lib
from tf_ardm.coding import coder as coder_lib
from tf_ardm.coding import range_coder as coding
from tf_ardm.coding import container
from tf_ardm.coding import crc
from tf_ardm import models
from tf_ardm.coding import stream
from tf_ardm.coding import varint
from tf_ardm.config import ModelConfig
from tf_ardm.data import datasets
from tf_ardm import errors
from tf_ardm import seeding
from tf_ardm.errors import UserError
from tf_ardm.models.ardm import Denoiser
from tf_ardm.models.upscale import UpscaleDenoiser
from tf_ardm.networks import fixed_point
from tf_ardm.serving import servable

from conftest import REPO  # pylint: disable=g-bad-import-order
TEXT_LEN = 32
# Format-1 .ardm files (container version 1, format-1 streams): tests/fixtures/v1.
V1_FILES = sorted(glob.glob(os.path.join(REPO, "tests", "fixtures", "v1", "*.ardm")))


def _model(config, seed=0):
  """An untrained model with made-up loss components (all budgets allowed)."""
  seeding.set_random_seed(seed)
  model = models.build(config)
  d = config.num_steps
  model.heldout_loss_components = np.tile(np.linspace(2.0, 0.1, d, dtype=np.float32) / d,
                                          config.num_stages)
  return model


def _coder(model, calibration, **kwargs):
  return coder_lib.Coder(codec_lib.Codec(model, calibration, **kwargs), model.config)


def _payload_bits(coder, data, lean=False):
  """Bits of a stream after its header."""
  return 8 * (len(data) - stream.read_header(data, coder.fingerprint, lean).size)


@pytest.fixture(scope="module")
def digits():
  return datasets.load("digits").splits["test"]


@pytest.fixture(scope="module")
def digits_model():
  return _model(tiny_config(shape=(8, 8, 1), num_classes=17))


@pytest.fixture(scope="module")
def digits_calibration(digits_model):
  """The first 64 training digits, as the CLI and exports.write calibrate."""
  return codec_lib.calibration_data(digits_model.config)


@pytest.fixture(scope="module")
def digits_coder(digits_model, digits_calibration):
  return _coder(digits_model, digits_calibration)


@pytest.fixture(scope="module")
def small_batch_coder(digits_model, digits_calibration):
  """digits_coder's model and calibration with at most 16 datapoints per network call."""
  return _coder(digits_model, digits_calibration, max_batch=16)


@pytest.fixture(scope="module")
def text_coder():
  model = _model(tiny_config("text", shape=(TEXT_LEN, 1), num_classes=28))
  return _coder(model, codec_lib.calibration_data(model.config))


def _constant_coder(logits, shape=(4, 4, 1)):
  """A codec whose network gives the same logits [K] everywhere."""
  model = _model(tiny_config(shape=shape, num_classes=len(logits)))
  model.ema = Denoiser(model.config, ConstantLogits(logits))
  calibration = np.random.default_rng(0).integers(0, len(logits), (8, *shape))
  return _coder(model, calibration)


# ------------------------------------------------------------ range coder ---


def _frequencies(logits):
  """The codec's coding frequencies int64 [..., K] of float logits [..., K]:
  integer logits at TABLE_EXPONENT, softmax weights, the frequency floor."""
  table = tf.constant(fixed_point.exp_table())
  return fixed_point.frequencies(fixed_point.softmax_weights(
      tf.constant(integer_logits(logits)), table))


def _ideal_bits(symbols, freqs):
  """-sum log2 (f[symbol] / sum f) over all symbols int32 [B, n], freqs [B, n, K]."""
  f = freqs.numpy().astype(np.float64)  # Exact: integers below 2^53.
  chosen = np.take_along_axis(f, symbols.numpy()[..., None], -1)[..., 0]
  return np.log2(f.sum(-1) / chosen).sum()


def _quantized_bits(symbols, freqs):
  """What `coding.encode` would cost with an exact arithmetic coder: -sum log2
  of each binary decision's probability, level c of its table row c - 1 being
  P(bit = 0) = c / 2^16 (CERTAIN: 1)."""
  levels, symbols = coding.node_levels(freqs).numpy(), symbols.numpy()
  nb = coding.num_bits(freqs.shape[-1])
  total = 0.0
  for depth in range(nb):
    node = 2**depth - 1 + (symbols >> (nb - depth))
    row = np.take_along_axis(levels, node[..., None], -1)[..., 0]
    p0 = np.where(row == coding.CERTAIN, 1.0, (row + 1.0) / coding.SCALE)
    bit = (symbols >> (nb - 1 - depth)) & 1
    total -= np.log2(np.where(bit == 0, p0, 1.0 - p0)).sum()
  return total


def _sample(freqs, rng):
  """Symbols int32 [B, n] drawn from int64 frequencies [B, n, K]."""
  f = freqs.numpy().astype(np.float64)
  cdf = np.cumsum(f, -1) / f.sum(-1, keepdims=True)
  u = rng.random(f.shape[:-1] + (1,))
  return tf.constant(np.minimum((cdf < u).sum(-1), f.shape[-1] - 1), tf.int32)


@pytest.mark.parametrize("num_classes", [2, 5, 17, 28, 256])
def test_range_coder_round_trip_and_size(num_classes):
  rng = np.random.default_rng(num_classes)
  freqs = _frequencies(rng.normal(size=(3, 200, num_classes)) * 4)
  assert freqs.dtype == tf.int64 and freqs.numpy().min() >= 1
  symbols = _sample(freqs, rng)

  @tf.function
  def round_trip(shape):
    handle = coding.encode(coding.encoder(shape), symbols, freqs)
    strings = coding.finish_encoder(handle)
    handle, decoded = coding.decode(coding.decoder(strings), freqs)
    return strings, decoded, coding.finish_decoder(handle)

  for shape in ([3], []):  # A stream per row, then one stream for all.
    strings, decoded, ok = round_trip(tf.constant(shape, tf.int32))
    np.testing.assert_array_equal(decoded, symbols)
    assert np.all(ok)
    coded = 8 * sum(len(s) for s in np.reshape(strings.numpy(), [-1]))
    ideal, quantized = _ideal_bits(symbols, freqs), _quantized_bits(symbols, freqs)
    assert abs(quantized - ideal) < 1e-4 * ideal + 0.01
    assert ideal - 8 <= coded <= quantized * 1.001 + 8 * len(np.reshape(strings, [-1]))


def _reference_levels(freqs):
  """node_levels in Python integers: per node, round half up of
  2^16 left / mass clipped to [1, 2^16 - 1], minus 1; CERTAIN where the right
  subtree holds no class."""
  k = len(freqs)
  nb = coding.num_bits(k)
  leaves = [int(f) for f in freqs] + [0] * (2**nb - k)
  rows = []
  for depth in range(nb):
    width = 2**(nb - depth)  # Leaves below a node at this depth.
    for prefix in range(2**depth):
      first = prefix * width
      left = sum(leaves[first:first + width // 2])
      mass = left + sum(leaves[first + width // 2:first + width])
      if first + width // 2 >= k:
        rows.append(coding.CERTAIN)
        continue
      level = (2 * coding.SCALE * left + mass) // max(2 * mass, 1)
      rows.append(min(max(level, 1), coding.SCALE - 1) - 1)
  return rows


@pytest.mark.parametrize("num_classes", [2, 5, 16, 17, 256])
def test_node_levels_are_exact_integer_ratios(num_classes):
  """node_levels of int64 frequencies against Python integers: small, huge
  (sums near 2^40), zero and equal frequencies; equal ones give level 1/2
  (row 2^15 - 1) wherever both subtrees hold as many classes."""
  rng = np.random.default_rng(num_classes)
  rows = [rng.integers(1, 2**20, num_classes), rng.integers(0, 2**31, num_classes),
          np.where(rng.random(num_classes) < 0.5, 0, rng.integers(1, 9, num_classes)),
          np.full(num_classes, 2**40 // num_classes - 1), np.ones(num_classes, np.int64),
          np.zeros(num_classes, np.int64)]
  freqs = np.stack(rows).astype(np.int64)
  levels = coding.node_levels(tf.constant(freqs)).numpy()
  assert levels.dtype == np.int32 and levels.shape == (len(rows), 2**coding.num_bits(
      num_classes) - 1)
  for row, expected in zip(levels, map(_reference_levels, freqs)):
    assert row.tolist() == expected
  if num_classes & (num_classes - 1) == 0:  # A power of two.
    assert set(levels[-2].tolist()) == {2**15 - 1}
  # A row's levels do not depend on the other rows of the batch.
  np.testing.assert_array_equal(coding.node_levels(tf.constant(freqs[2:3])), levels[2:3])


def test_decoding_garbage_stays_in_range():
  freqs = tf.ones([2, 50, 17], tf.int64)
  handle, decoded = coding.decode(coding.decoder(tf.constant([b"\xff" * 40, b""])), freqs)
  assert decoded.numpy().min() >= 0 and decoded.numpy().max() < 17


def test_crc32_matches_zlib():
  rng = np.random.default_rng(0)
  for length in (0, 1, 2, 3, 7, 8, 9, 100, 1000):
    data = rng.integers(0, 256, size=(3, length), dtype=np.uint8)
    assert list(crc.crc32(data).numpy()) == [zlib.crc32(row.tobytes()) for row in data]


def test_varints_in_python_and_tf_agree():
  values = [0, 1, 127, 128, 300, 2**14 - 1, 2**14, 2**32 - 1, 2**35 - 1]
  data = [varint.encode(v) for v in values]
  assert data[:5] == [b"\x00", b"\x01", b"\x7f", b"\x80\x01", b"\xac\x02"]
  raw, size = varint.tf_encode(tf.constant(values, tf.int64), 5)
  assert [bytes(r[:n]) for r, n in zip(raw.numpy().astype(np.uint8), size.numpy())] == data
  padded = np.array([list(d.ljust(5, b"\xff")) for d in data], np.int64)
  value, size, ok = varint.tf_decode(tf.constant(padded), 5)
  assert list(value.numpy()) == values and list(size.numpy()) == list(map(len, data))
  assert ok.numpy().all()
  assert not varint.tf_decode(tf.constant([[0x80] * 5], tf.int64), 5)[2].numpy()[0]
  for v, d in zip(values, data):
    assert varint.decode(b"?" + d + b"?", 1, 5) == (v, 1 + len(d))
  with pytest.raises(EOFError):
    varint.decode(b"\x80\x80", 0, 5)
  with pytest.raises(ValueError):
    varint.decode(b"\x80" * 5 + b"\x01", 0, 5)
  assert varint.decode(b"\x80" * 9 + b"\x01", 0, 10) == (2**63, 10)


def test_tf_assertions_become_one_line_user_errors():
  """Nested functions, the servable's tf.debugging.assert_* and other errors."""

  @tf.function
  def inner(x):
    stream.assert_all(x < 3, "x must be < 3; x:", x)
    tf.debugging.assert_greater_equal(x, 0, message="x has values < 0")
    return x

  outer = tf.function(lambda x: inner(x) + 1)
  cases = [(inner, [1, 7], None, "x must be < 3; x: 7 (stream 1 of the batch)"),
           (outer, [1, 7], ["a", "b"], "x must be < 3; x: 7 (b)"),
           (outer, [1, 7], ["a", None], "x must be < 3; x: 7"),
           (inner, [-1, 2], None, "x has values < 0"),
           (outer, [-1, 2], None, "x has values < 0")]
  for fn, x, names, message in cases:
    with pytest.raises(tf.errors.InvalidArgumentError) as info:
      fn(tf.constant(x))
    assert str(errors.from_tf_error(info.value, names)) == message
  gather = tf.function(lambda x: tf.gather(x, x + 5))
  for fn in (gather, tf.function(lambda x: gather(x) + 1)):
    with pytest.raises(tf.errors.InvalidArgumentError) as info:
      fn(tf.constant([1, 2]))
    assert str(errors.from_tf_error(info.value)).startswith("indices[0] = 6 is not in [0, 2)")


# ------------------------------------------------------------ round trips ---


@pytest.mark.parametrize("budget", [1, 8, 64])
def test_digits_round_trip(digits_coder, digits, budget):
  x = digits[:20]
  streams = digits_coder.compress_each(x, budget)
  np.testing.assert_array_equal(digits_coder.decompress_each(streams), x)
  solid = digits_coder.compress(x, budget)
  np.testing.assert_array_equal(digits_coder.decompress(solid), x)
  header = stream.read_header(streams[0], digits_coder.fingerprint)
  assert (header.budget, header.count, header.size) == (budget, 1, 16)
  assert stream.read_header(solid, digits_coder.fingerprint).count == 20
  # Magic, format 2, the integer arithmetic, the fingerprint.
  assert streams[0][:8] == stream.MAGIC + bytes([2, stream.ARITHMETIC]) + digits_coder.fingerprint
  assert digits_coder.arithmetic == stream.ARITHMETIC == 2
  # The header's CRC is zlib's CRC-32 of the values, one byte each.
  assert streams[3][header.size - 4:header.size] == zlib.crc32(
      x[3].astype(np.uint8).tobytes()).to_bytes(4, "big")


@pytest.mark.parametrize("budget", [1, 8, TEXT_LEN])
def test_text_round_trip(text_coder, budget):
  x = datasets.load("text", seq_len=TEXT_LEN).splits["test"][:20]
  np.testing.assert_array_equal(text_coder.decompress_each(text_coder.compress_each(x, budget)), x)
  np.testing.assert_array_equal(text_coder.decompress(text_coder.compress(x, budget)), x)
  lean = text_coder.compress(x, budget, lean=True)
  np.testing.assert_array_equal(text_coder.decompress(lean, lean=True), x)


def test_lean_framing_round_trip(digits_coder, digits):
  """Lean streams: budget and count varints, the data CRC, then the same
  payload as the full framing's; each framing is refused as the other."""
  x = digits[:9]
  full_each = digits_coder.compress_each(x, 8)
  lean_each = digits_coder.compress_each(x, 8, lean=True)
  for full, lean in zip(full_each, lean_each):
    assert stream.read_header(lean, None, lean=True) == (8, 1, 6)
    assert lean[:2] == bytes([8, 1]) and lean[2:6] == full[12:16] and lean[6:] == full[16:]
  np.testing.assert_array_equal(digits_coder.decompress_each(lean_each, lean=True), x)
  solid = digits_coder.compress(x, 8)
  solid_lean = digits_coder.compress(x, 8, lean=True)
  assert solid_lean == bytes([8, 9]) + solid[12:]
  np.testing.assert_array_equal(digits_coder.decompress(solid_lean, lean=True), x)
  # The lean batch and solid functions of the module agree.
  module = digits_coder.module
  assert list(module.encode(x, 8, False, True).numpy()) == lean_each
  np.testing.assert_array_equal(module.decode(tf.constant(lean_each), False, True), x)
  for call in (lambda: digits_coder.decompress(solid_lean),
               lambda: digits_coder.decompress_each([lean_each[0]]),
               lambda: digits_coder.decompress(solid, lean=True),
               lambda: digits_coder.decompress_each([full_each[0]], lean=True)):
    with pytest.raises(UserError) as info:
      call()
    assert str(info.value) and "\n" not in str(info.value)


def test_random_constant_and_extreme_inputs(digits_coder):
  rng = np.random.default_rng(1)
  x = np.stack([rng.integers(0, 17, (8, 8, 1)), np.zeros((8, 8, 1)),
                np.full((8, 8, 1), 16), np.arange(64).reshape(8, 8, 1) % 17]).astype(np.int32)
  np.testing.assert_array_equal(digits_coder.decompress_each(digits_coder.compress_each(x, 5)), x)
  assert digits_coder.decompress(digits_coder.compress(x[:0], 3)).shape == (0, 8, 8, 1)
  assert digits_coder.decompress(digits_coder.compress(x[:0], 3, lean=True),
                                 lean=True).shape == (0, 8, 8, 1)


def test_uniform_logits_cost_log2_k_bits():
  """All-zero logits: each symbol costs log2 K bits ideally, in the float
  model, in the integer model (equal frequencies) and in the payload."""
  coder = _constant_coder(np.zeros(17, np.float32))
  x = np.random.default_rng(2).integers(0, 17, (48, 4, 4, 1)).astype(np.int32)
  per_datapoint = 16 * np.log2(17)
  np.testing.assert_allclose(coder.integer_bits(x, 4), per_datapoint, rtol=1e-12)
  np.testing.assert_allclose(coder.exact_bits(x, 4), per_datapoint, rtol=1e-6)
  data = coder.compress(x, 4)
  payload_bits = _payload_bits(coder, data)
  ideal = x.size * np.log2(17)
  # Overheads: the 16-bit quantization of P(bit = 0) and at most a flush byte.
  assert ideal - 1 <= payload_bits <= ideal * (1 + 1e-5) + 8
  np.testing.assert_array_equal(coder.decompress(data), x)


def test_adversarial_probabilities():
  """Symbols the model deems nearly impossible still round-trip.

  Logit 40 for class 0: in the integer softmax every other class gets
  weight 0 (exp(-40) is past the table), so the frequency floor
  2^20 // 2^16 + 1 = 17 is all they have: p = 17 / (2^20 + 17 * 17).
  """
  logits = np.zeros(17, np.float32)
  logits[0] = 40.0
  coder = _constant_coder(logits)
  freqs = _frequencies(logits).numpy()
  assert freqs.tolist() == [2**20 + 17] + [17] * 16
  p_rare = 17 / (2**20 + 17 * 17)
  x = np.stack([np.full((4, 4, 1), 16), np.zeros((4, 4, 1)),
                np.arange(16).reshape(4, 4, 1)]).astype(np.int32)
  streams = coder.compress_each(x, 16)
  np.testing.assert_array_equal(coder.decompress_each(streams), x)
  np.testing.assert_allclose(coder.integer_bits(x[:1], 16), 16 * -np.log2(p_rare), rtol=1e-12)
  assert _payload_bits(coder, streams[0]) == pytest.approx(16 * -np.log2(p_rare), rel=1e-3,
                                                           abs=8)
  assert _payload_bits(coder, streams[1]) <= 8  # 16 near-certain symbols: about 0.006 bits.


def test_integer_and_float_code_lengths_agree_and_the_payload_follows(digits_coder, digits):
  """An untrained model: the integer model's code length is near the float
  model's (loosely: 5% in all, 10% a datapoint; measured 1-4% and 7% at
  budget 1, where the integer network's logits are flat); the streams'
  payloads are within the coder's overhead of it: the 16-bit levels, a
  flush of up to 2 bytes, and up to a byte or two less than the ideal
  length for a short stream."""
  x = digits[:20]
  for budget in (1, 8, 64):
    integer_bits = digits_coder.integer_bits(x, budget)
    exact = digits_coder.exact_bits(x, budget)
    assert integer_bits.shape == exact.shape == (20,) and integer_bits.dtype == np.float64
    print(f"budget {budget}: integer {integer_bits.sum():.2f} bits, float {exact.sum():.2f}, "
          f"ratio {integer_bits.sum() / exact.sum():.6f}")
    total = integer_bits.sum()
    assert abs(total / exact.sum() - 1) < 0.05
    np.testing.assert_allclose(integer_bits, exact, rtol=0.1)
    # The coder codes the binary decisions with 16-bit levels rounded from
    # the frequencies: on given data that may also save a little (measured:
    # 10 bits of 5690 at budget 64).
    solid = _payload_bits(digits_coder, digits_coder.compress(x, budget))
    assert total * (1 - 3e-3) - 8 <= solid <= total * (1 + 1e-4) + 16
    for bits, data in zip(integer_bits, digits_coder.compress_each(x, budget)):
      assert bits * (1 - 3e-3) - 16 <= _payload_bits(digits_coder, data) <= (
          bits * (1 + 1e-3) + 16)


@pytest.mark.slow
@pytest.mark.parametrize("name,count", [("digits", 16), ("text", 4), ("photos_upscale4", 8)])
def test_trained_model_integer_bits_match_exact_bits(name, count):
  """Each zoo model (restored from its servable export), calibrated as an
  export would be: integer_bits within 1% of exact_bits on its test split,
  and the lean solid payload within a flush of integer_bits."""
  model = servable.restore_model(os.path.join(REPO, "savedmodels", name))
  coder = _coder(model, codec_lib.calibration_data(model.config))
  x = np.asarray(datasets.split(model.config, "test", None, count))
  integer_bits, exact = coder.integer_bits(x, 8), coder.exact_bits(x, 8)
  print(f"zoo {name}, budget 8: integer {integer_bits.sum():.3f} bits, float "
        f"{exact.sum():.3f}, ratio {integer_bits.sum() / exact.sum():.6f}")
  assert abs(integer_bits.sum() / exact.sum() - 1) < 0.01
  np.testing.assert_allclose(integer_bits, exact, rtol=0.03)
  data = coder.compress(x, 8, lean=True)
  assert integer_bits.sum() - 1 <= _payload_bits(coder, data, lean=True) <= (
      integer_bits.sum() * (1 + 1e-3) + 16)
  np.testing.assert_array_equal(coder.decompress(data, lean=True), x)


# ------------------------------------------------------------ determinism ---


def test_any_batch_size_codes_the_same_bytes(digits_coder, digits):
  """Streams coded 1, 7, 16 or 64 at a time are the same bytes, and every
  batch size decodes them exactly (there is no batch-size rule)."""
  x = digits[:64]
  streams = digits_coder.compress_each(x, 3)
  assert len(set(streams)) == 64
  for size in (1, 7, 16, 64):
    starts = range(0, 64, size) if size > 1 else (0, 15, 16, 36, 63)
    for i in starts:
      assert digits_coder.compress_each(x[i:i + size], 3) == streams[i:i + size], (size, i)
      np.testing.assert_array_equal(digits_coder.decompress_each(streams[i:i + size]),
                                    x[i:i + size])
  # The single-datapoint tf.functions of the module agree too.
  module = digits_coder.module
  assert module.compress(x[5], 3).numpy() == streams[5]
  np.testing.assert_array_equal(module.decompress(streams[5]), x[5])


def _check_xla_off(coder, x, budget):
  """The plain TF network function gives the XLA one's streams, code lengths
  and decodes."""
  coder.set_xla(True)
  each, solid = coder.compress_each(x, budget), coder.compress(x, budget)
  bits = coder.integer_bits(x, budget)
  assert coder.module.use_xla.numpy()
  coder.set_xla(False)
  try:
    assert not coder.module.use_xla.numpy()
    assert coder.compress_each(x, budget) == each
    assert coder.compress(x, budget) == solid
    np.testing.assert_array_equal(coder.integer_bits(x, budget), bits)
    np.testing.assert_array_equal(coder.decompress_each(each), x)
    np.testing.assert_array_equal(coder.decompress(solid), x)
  finally:
    coder.set_xla(None)
  np.testing.assert_array_equal(coder.decompress(solid), x)


def test_the_coder_picks_xla_for_large_jobs_only(digits_coder, digits):
  """Auto (the default): plain TF below AUTO_XLA_WORK position-calls, XLA from
  it on; an explicit choice holds whatever the job."""
  assert digits_coder.xla is None
  # Digits: D = 64 positions; at budget 64, 64 datapoints are 2^18 position-calls.
  assert coder_lib.AUTO_XLA_WORK == 64 * 64 * 64
  digits_coder.compress(digits[:1], 8)
  assert not digits_coder.module.use_xla.numpy()
  digits_coder.compress(digits[:64], 64)
  assert digits_coder.module.use_xla.numpy()
  digits_coder.compress(digits[:63], 64)
  assert not digits_coder.module.use_xla.numpy()
  try:
    digits_coder.set_xla(True)
    digits_coder.compress(digits[:1], 8)
    assert digits_coder.module.use_xla.numpy()
  finally:
    digits_coder.set_xla(None)


def test_xla_on_and_off_code_the_same_bytes(digits_coder, text_coder, digits):
  _check_xla_off(digits_coder, digits[:9], 8)
  _check_xla_off(text_coder, datasets.load("text", seq_len=TEXT_LEN).splits["test"][:5], 8)


def test_max_batch_changes_neither_fingerprint_nor_streams(digits_coder, small_batch_coder,
                                                           digits_model, digits):
  assert digits_coder.max_batch == codec_lib.default_max_batch(64) == 256
  assert small_batch_coder.max_batch == 16
  assert small_batch_coder.fingerprint == digits_coder.fingerprint
  x = digits[:37]
  calls = small_batch_coder.calls
  each = small_batch_coder.compress_each(x, 4)
  assert small_batch_coder.calls - calls == 4 * 3  # Batches of 16, 16 and 5.
  assert each == digits_coder.compress_each(x, 4)
  solid = small_batch_coder.compress(x, 4, lean=True)
  assert solid == digits_coder.compress(x, 4, lean=True)
  np.testing.assert_array_equal(small_batch_coder.decompress(solid, lean=True), x)
  np.testing.assert_array_equal(digits_coder.decompress_each(each), x)
  np.testing.assert_array_equal(small_batch_coder.integer_bits(x, 4),
                                digits_coder.integer_bits(x, 4))
  with pytest.raises(UserError, match="at least 1"):
    codec_lib.Codec(digits_model, digits[:4], max_batch=-1)


def test_many_network_batches_per_step_code_the_same_every_time(small_batch_coder,
                                                                 digits_coder, digits):
  """Ten network calls per step (160 datapoints, max_batch 16), coded
  repeatedly: the same bytes each time, and those of a single call.

  (TF 2.14's oneDNN kernels gave wrong results or crashed when the batches
  of a step ran concurrently.)
  """
  x = digits[:160]
  first = small_batch_coder.compress_each(x, 2)
  for _ in range(3):
    assert small_batch_coder.compress_each(x, 2) == first
  assert digits_coder.compress_each(x, 2) == first
  np.testing.assert_array_equal(small_batch_coder.decompress_each(first), x)


@pytest.mark.slow
def test_export_and_fresh_process_decode(digits_model, digits_calibration, digits_coder, digits,
                                         tmp_path):
  export_dir = str(tmp_path / "codec")
  codec_lib.export(digits_model, export_dir, digits_calibration)
  loaded = coder_lib.load(export_dir)
  assert (loaded.fingerprint, loaded.arithmetic, loaded.max_batch, loaded.max_solid) == (
      digits_coder.fingerprint, digits_coder.arithmetic, digits_coder.max_batch,
      digits_coder.max_solid)
  x = digits[:20]
  streams = digits_coder.compress_each(x, 8)
  solid = digits_coder.compress(x, 8)
  lean = digits_coder.compress_each(x, 8, lean=True)
  np.save(tmp_path / "x.npy", x)
  with open(tmp_path / "streams.bin", "wb") as f:
    f.write(b"".join(len(s).to_bytes(4, "big") + s for s in streams + lean + [solid]))
  script = textwrap.dedent(f"""
      import numpy as np, tensorflow as tf
      import {coding.OPS_PACKAGE}  # Registers the range coder ops.
      loaded = tf.saved_model.load({export_dir!r})
      data, streams, pos = open({str(tmp_path / 'streams.bin')!r}, "rb").read(), [], 0
      while pos < len(data):
        size = int.from_bytes(data[pos:pos + 4], "big")
        streams.append(data[pos + 4:pos + 4 + size])
        pos += 4 + size
      full, lean, solid = streams[:20], streams[20:40], streams[40]
      x = np.load({str(tmp_path / 'x.npy')!r})
      assert np.array_equal(loaded.decompress_batch(tf.constant(full)), x)
      assert np.array_equal(loaded.decompress_solid(solid), x)
      assert np.array_equal(loaded.decompress(full[4]), x[4])
      assert np.array_equal(loaded.decode(tf.constant(lean), False, True), x)
      again = loaded.compress_batch(x, 8).numpy()
      assert list(again) == full, "different bytes"
      loaded.use_xla.assign(False)
      assert list(loaded.compress_batch(x[:7], 8).numpy()) == full[:7], "different bytes, no XLA"
      assert list(loaded.encode(x, 8, False, True).numpy()) == lean, "different lean bytes"
      print("fresh ok")
      """)
  out = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True,
                       text=True, timeout=600)
  assert "fresh ok" in out.stdout, out.stderr[-3000:]


# -------------------------------------------------------- errors and fuzz ---


def _expect_error(coder, data, solid, lean=False):
  """Decodes mutated data: a UserError, or the original data exactly."""
  try:
    coder.decompress(data, lean) if solid else coder.decompress_each([data], lean=lean)
  except UserError as e:
    assert str(e) and "\n" not in str(e)
    return "error"
  return "decoded"


def _fuzz(coder, x, budget, cases, seed, lean=False):
  """Decodes `cases` mutations of x's streams: counts of 'error' and 'decoded'."""
  rng = np.random.default_rng(seed)
  originals = [(s, False) for s in coder.compress_each(x, budget, lean=lean)]
  originals.append((coder.compress(x, budget, lean=lean), True))
  outcomes = {"error": 0, "decoded": 0}
  for case in range(cases):
    data, solid = originals[case % len(originals)]
    kind = case % 4
    if kind == 0:  # Flip one bit.
      pos = rng.integers(len(data))
      mutated = data[:pos] + bytes([data[pos] ^ (1 << rng.integers(8))]) + data[pos + 1:]
    elif kind == 1:  # Truncate.
      mutated = data[:rng.integers(len(data))]
    elif kind == 2:  # Extend.
      mutated = data + rng.bytes(rng.integers(1, 4))
    else:  # Random bytes after a valid prefix of random length.
      keep = rng.integers(len(data))
      mutated = data[:keep] + rng.bytes(rng.integers(0, 30))
    if mutated == data:
      continue
    outcomes[_expect_error(coder, mutated, solid, lean)] += 1
  return outcomes


def test_fuzzed_streams_never_decode(digits_coder, digits):
  outcomes = _fuzz(digits_coder, digits[:6], 4, 300, seed=3)
  assert outcomes["decoded"] == 0, outcomes


def test_fuzzed_lean_streams_never_decode(digits_coder, digits):
  """No magic, fingerprint or header check: the range checks, the data CRC
  and the re-encoding check still refuse every mutation."""
  outcomes = _fuzz(digits_coder, digits[:6], 4, 160, seed=8, lean=True)
  assert outcomes["decoded"] == 0 and outcomes["error"] > 150, outcomes


def test_wrong_model_and_settings_are_refused(digits_model, digits_calibration, digits_coder,
                                              digits):
  """Other weights, or the same weights calibrated on other data, make
  another integer model: another fingerprint, and its streams are refused."""
  data = digits_coder.compress_each(digits[:1], 8)[0]
  lean = digits_coder.compress_each(digits[:1], 8, lean=True)[0]
  other = _coder(_model(tiny_config(shape=(8, 8, 1), num_classes=17), seed=1),
                 digits_calibration)
  recalibrated = _coder(digits_model, digits[:64])
  ours = digits_coder.module.integer.arrays()
  theirs = recalibrated.module.integer.arrays()
  assert len(ours) != len(theirs) or any(
      a.shape != b.shape or np.any(a != b) for a, b in zip(ours, theirs))
  for coder in (other, recalibrated):
    assert coder.fingerprint != digits_coder.fingerprint
    with pytest.raises(UserError, match="different model"):
      coder.decompress_each([data])
    with pytest.raises(tf.errors.InvalidArgumentError, match="fingerprint mismatch"):
      coder.module.decompress(data)  # The SavedModel function checks too.
  # A lean stream names no model: decoded with other weights, the data CRC
  # refuses it. (The recalibrated model happens to give these datapoints the
  # same frequencies: it may decode them, but only exactly.)
  with pytest.raises(UserError, match="CRC mismatch") as info:
    other.decompress_each([lean], lean=True)
  assert "\n" not in str(info.value)
  try:
    np.testing.assert_array_equal(recalibrated.decompress_each([lean], lean=True), digits[:1])
  except UserError as e:
    assert "\n" not in str(e)


def _v1_streams(path):
  """The format-1 streams of a version-1 .ardm file (its layout at 73df71d:
  magic, version, kind, rank and dims, NPY dtype or text newline, then the
  streams with their lengths; integers are varints)."""
  data = open(path, "rb").read()
  assert data[:5] == b"ARDM\x01", path
  kind, pos = data[5], 6
  rank, pos = varint.decode(data, pos, 10)
  for _ in range(rank):
    _, pos = varint.decode(data, pos, 10)
  if kind == container.NPY:
    size, pos = varint.decode(data, pos, 10)
    pos += size
  if kind == container.TEXT:
    pos += 1
  count, pos = varint.decode(data, pos, 10)
  streams = []
  for _ in range(count):
    size, pos = varint.decode(data, pos, 10)
    streams.append(data[pos:pos + size])
    pos += size
  assert pos == len(data), path
  return streams


def test_format_1_streams_give_one_line_error(digits_coder):
  """The streams of tests/fixtures/v1 (format 1, the float arithmetic):
  refused with stream.FORMAT_1 by the Python and the TF header checks."""
  streams = [s for path in V1_FILES for s in _v1_streams(path)]
  assert len(V1_FILES) == 5 and len(streams) >= 5
  assert "\n" not in stream.FORMAT_1 and "73df71d" in stream.FORMAT_1
  for data in streams:
    assert data[:3] == stream.MAGIC + b"\x01"
    with pytest.raises(UserError) as info:
      digits_coder.decompress(data)
    assert str(info.value) == stream.FORMAT_1
    with pytest.raises(UserError) as info:
      digits_coder.decompress_each([data])
    assert str(info.value) == "stream 0: " + stream.FORMAT_1
    with pytest.raises(UserError) as info:
      digits_coder._run(digits_coder.module.decompress_batch, tf.constant([data]), names=[None])
    assert str(info.value) == stream.FORMAT_1
    with pytest.raises(tf.errors.InvalidArgumentError, match="a format-1 ARDM stream"):
      digits_coder.module.decompress_solid(data)


def test_bad_input_is_refused(digits_model, digits_coder, digits):
  x = digits[:2]
  for bad, message in [(x.astype(np.float32), "integer"), (x[:, :4], "shape"),
                       (x + 17, "values"), (x - 1, "values")]:
    with pytest.raises(UserError, match=message):
      digits_coder.compress_each(bad, 8)
    with pytest.raises(UserError, match=message):
      digits_coder.integer_bits(bad, 8)
  for budget in (0, 65):
    with pytest.raises(UserError, match="budget"):
      digits_coder.compress(x, budget)
  with pytest.raises(tf.errors.InvalidArgumentError, match="x must hold values"):
    digits_coder.module.compress_batch(x + 17, 8)
  with pytest.raises(tf.errors.InvalidArgumentError, match="x must hold values"):
    digits_coder.module.code_length(x + 17, 8)
  with pytest.raises((ValueError, TypeError)):
    digits_coder.module.compress(x, 8)  # [2, 8, 8, 1] is not one datapoint.
  with pytest.raises(UserError, match="share a budget"):
    digits_coder._run(digits_coder.module.decompress_batch, tf.constant(
        [digits_coder.compress_each(x[:1], 2)[0], digits_coder.compress_each(x[:1], 3)[0]]))
  with pytest.raises(UserError, match="calibration datapoints"):
    codec_lib.Codec(digits_model, x[:0])
  with pytest.raises(UserError, match="shape"):
    codec_lib.Codec(digits_model, x[:, :4])


# -------------------------------------------------------- Upscale models ---


def _upscale_config(parametrization, transition="zero_lsb", branching=16, shape=(4, 4, 3)):
  """A photos-like Upscale config: K = 256, a tiny U-Net."""
  return ModelConfig("photos", "image", list(shape), 256, "unet",
                     dict(channels=8, num_res_blocks=0), model_type="upscale",
                     branching=branching, transition=transition,
                     parametrization=parametrization)


@pytest.fixture(scope="module", params=["data", "direct"])
def upscale_model(request):
  """Upscale-16 (S = 2 stages) on 4x4x3 patches (D = 48), untrained."""
  return _model(_upscale_config(request.param))


@pytest.fixture(scope="module")
def patches():
  x = np.random.default_rng(5).integers(0, 256, (16, 4, 4, 3))
  x[1], x[2] = 0, 255  # Extreme values: digits all 0 or all b - 1.
  return x.astype(np.int32)


@pytest.fixture(scope="module")
def upscale_coder(upscale_model, patches):
  return _coder(upscale_model, patches)


@pytest.mark.parametrize("budget", [1, 5, 48])
def test_upscale_round_trip(upscale_coder, patches, budget):
  x = patches[:6]
  calls = upscale_coder.calls
  streams = upscale_coder.compress_each(x, budget)
  assert upscale_coder.calls - calls == 2 * budget  # S calls per budget step.
  np.testing.assert_array_equal(upscale_coder.decompress_each(streams), x)
  solid = upscale_coder.compress(x, budget)
  np.testing.assert_array_equal(upscale_coder.decompress(solid), x)
  header = stream.read_header(solid, upscale_coder.fingerprint)
  assert (header.budget, header.count) == (budget, 6)
  lean = upscale_coder.compress(x, budget, lean=True)
  assert lean == bytes([budget, 6]) + solid[12:]
  np.testing.assert_array_equal(upscale_coder.decompress(lean, lean=True), x)


def test_upscale_batch_single_and_solid_agree(upscale_coder, patches):
  streams = upscale_coder.compress_each(patches, 5)
  for i in (0, 2, 15):
    assert upscale_coder.compress_each(patches[i:i + 1], 5) == [streams[i]]
    assert upscale_coder.module.compress(patches[i], 5).numpy() == streams[i]
  parts = [upscale_coder.decompress_each(streams[i:i + 3]) for i in range(0, 16, 3)]
  np.testing.assert_array_equal(np.concatenate(parts), patches)
  np.testing.assert_array_equal(upscale_coder.decompress(upscale_coder.compress(patches, 5)),
                                patches)
  assert upscale_coder.decompress(upscale_coder.compress(patches[:0], 5)).shape == (0, 4, 4, 3)
  lean = upscale_coder.compress_each(patches[:7], 5, lean=True)
  np.testing.assert_array_equal(upscale_coder.decompress_each(lean, lean=True), patches[:7])


def test_upscale_xla_on_and_off_code_the_same_bytes(upscale_coder, patches):
  _check_xla_off(upscale_coder, patches[:5], 5)


def test_upscale_stream_length_is_the_integer_code_length(upscale_coder, patches):
  """A solid stream's payload against the integer model's code length
  (whose frequencies hold the floor of the coded choices), and that against
  the float model's exact -log2 p(x | sigma, policies).

  Budget of the payload: the 16-bit levels and one coder flush (at most 2
  bytes); it may also come out up to a byte below the ideal length. The
  untrained model's integer and float code lengths agree loosely (5% in
  all, 10% a datapoint; measured 0.4-1.5% and 4%).
  """
  for budget in (1, 48):
    integer_bits = upscale_coder.integer_bits(patches, budget)
    exact = upscale_coder.exact_bits(patches, budget)
    total = integer_bits.sum()
    payload = _payload_bits(upscale_coder, upscale_coder.compress(patches, budget))
    print(f"{upscale_coder.config.parametrization} budget {budget}: exact {exact.sum():.2f} "
          f"bits, integer {total:.2f}, payload {payload} bits, payload / integer "
          f"{payload / total:.6f}, integer / exact {total / exact.sum():.6f}")
    assert total - 1e-4 * total - 8 <= payload <= total + 1e-4 * total + 16
    assert abs(total / exact.sum() - 1) < 0.05
    np.testing.assert_allclose(integer_bits, exact, rtol=0.1)


def test_upscale_uniform_choices_cost_log2_k_bits():
  """All-zero logits: each of the S = 4 stages costs log2(b) = 2 bits a value.

  Augmented classes (K' = 341): the codec codes only the b possible values of
  each stage, so the payload is the exact length, 8 bits a value. Flat loss
  components make the policies [0, 0, 0]: two empty groups per stage.
  """
  config = _upscale_config("data", "augment", branching=4, shape=(2, 2, 3))
  model = _model(config)
  model.ema = UpscaleDenoiser(config, ConstantLogits(np.zeros(256, np.float32)))
  model.heldout_loss_components = np.ones(config.total_steps, np.float32)
  x = np.random.default_rng(6).integers(0, 256, (40, 2, 2, 3)).astype(np.int32)
  coder = _coder(model, x[:8])
  np.testing.assert_array_equal(coder.module.policy(3), [[0, 0, 0]] * 4)
  np.testing.assert_allclose(coder.exact_bits(x, 3), 8 * 12, rtol=1e-5)
  np.testing.assert_allclose(coder.integer_bits(x, 3), 8 * 12, rtol=1e-12)
  data = coder.compress(x, 3)
  payload_bits = _payload_bits(coder, data)
  ideal = 8 * x.size
  assert ideal - 1 <= payload_bits <= ideal * (1 + 1e-5) + 8
  np.testing.assert_array_equal(coder.decompress(data), x)


def test_upscale_fuzzed_streams_never_decode(upscale_coder, patches):
  outcomes = _fuzz(upscale_coder, patches[:3], 5, 24, seed=7)
  assert outcomes["decoded"] == 0 and outcomes["error"] > 20, outcomes


@pytest.mark.slow
def test_upscale_export_round_trip(patches, tmp_path):
  """The codec export of an Upscale model (direct parametrization; the CLI
  test exports a data-parametrized one) loads and round-trips."""
  model = _model(_upscale_config("direct"))
  export_dir = str(tmp_path / "codec")
  codec_lib.export(model, export_dir, patches, max_batch=5)
  loaded, fresh = coder_lib.load(export_dir), _coder(model, patches)
  assert loaded.fingerprint == fresh.fingerprint and loaded.max_batch == 5
  streams = loaded.compress_each(patches[:4], 5)
  np.testing.assert_array_equal(loaded.decompress_each(streams), patches[:4])
  np.testing.assert_array_equal(loaded.decompress(loaded.compress(patches, 48)), patches)
  lean = loaded.compress(patches, 5, lean=True)
  assert lean == fresh.compress(patches, 5, lean=True)
  np.testing.assert_array_equal(loaded.decompress(lean, lean=True), patches)


# -------------------------------------------------------------- .ardm files ---


def test_container_tiles_any_image_and_chunks_text(digits_coder, text_coder, tmp_path):
  config = digits_coder.config
  image = np.random.default_rng(4).integers(0, 17, (13, 21)).astype(np.uint8)
  Image.fromarray(image, "L").save(tmp_path / "odd.png")
  x, original = container.read(str(tmp_path / "odd.png"), config)
  assert x.shape == (2 * 3, 8, 8, 1)
  data = container.pack(original, [digits_coder.compress(x, 2, lean=True)],
                        digits_coder.fingerprint, digits_coder.arithmetic)
  assert data[:5] == b"ARDM\x02"
  original, fingerprint, streams = container.unpack(data, "odd.ardm")
  assert fingerprint == digits_coder.fingerprint
  container.check_model(fingerprint, digits_coder.fingerprint, "odd.ardm")
  with pytest.raises(UserError, match="odd.ardm: .*fingerprint mismatch"):
    container.check_model(fingerprint, text_coder.fingerprint, "odd.ardm")
  assert stream.read_header(streams[0], None, lean=True) == (2, 6, 6)
  back = Image.open(io.BytesIO(container.rebuild(digits_coder.decompress(streams[0], lean=True),
                                                 original, config)))
  np.testing.assert_array_equal(np.asarray(back), image)
  for bad, message in [(data[:-1], "truncated"), (data + b"\0", "after the last stream"),
                       (b"ARDM\x07" + data[5:], "version 7"),
                       (b"ARDM\x01" + data[5:], "version-1"), (b"PK" + data[2:], "magic")]:
    with pytest.raises(UserError, match=message) as info:
      container.unpack(bad, "bad.ardm")
    assert str(info.value).startswith("bad.ardm: ") and "\n" not in str(info.value)

  Image.fromarray(np.full((8, 8), 200, np.uint8), "L").save(tmp_path / "bright.png")
  with pytest.raises(UserError, match=r"values must lie in \[0, 17\)"):
    container.read(str(tmp_path / "bright.png"), config)
  Image.fromarray(np.zeros((8, 8, 3), np.uint8), "RGB").save(tmp_path / "rgb.png")
  with pytest.raises(UserError, match="an 8-bit RGB PNG; this model codes 1-channel images"):
    container.read(str(tmp_path / "rgb.png"), config)

  config = text_coder.config
  (tmp_path / "a.txt").write_bytes(b"hello world\n")
  (tmp_path / "b.txt").write_bytes(b"Hello,  World!")
  x, original = container.read(str(tmp_path / "a.txt"), config)
  assert x.shape == (1, TEXT_LEN, 1) and original.newline
  assert container.rebuild(x, original, config) == b"hello world\n"
  with pytest.raises(UserError, match="--normalize"):
    container.read(str(tmp_path / "b.txt"), config)
  x, original = container.read(str(tmp_path / "b.txt"), config, normalize=True)
  assert container.rebuild(x, original, config) == b"hello world"


def test_format_1_containers_are_refused():
  """Every file of tests/fixtures/v1 gives the one-line version-1 error."""
  for path in V1_FILES:
    with open(path, "rb") as f:
      data = f.read()
    with pytest.raises(UserError) as info:
      container.unpack(data, path)
    message = str(info.value)
    assert message.startswith(f"{path}: a version-1 .ardm file") and "\n" not in message
    assert stream.FORMAT_1_READER in message


def _leftovers(directory, expected):
  """The entries of `directory` (hidden ones too) that are not `expected`."""
  return sorted(set(os.listdir(directory)) - set(expected))


def test_commit_leaves_nothing_but_its_outputs(tmp_path, monkeypatch):
  """container.commit writes exactly its outputs; the check sees a leftover
  temporary file when atomic.file leaves one behind."""
  container.commit({"": b"data"}, str(tmp_path / "a.ardm"))
  container.commit({"x.ardm": b"1", "sub/y.ardm": b"2"}, str(tmp_path / "out"))
  container.commit({"z.ardm": b"3"}, str(tmp_path / "out"))  # Replaces out/.
  assert _leftovers(tmp_path, ["a.ardm", "out"]) == []
  assert _leftovers(tmp_path / "out", ["z.ardm"]) == []

  @contextlib.contextmanager
  def leaky_file(path):  # Copies its temporary file into place, keeping it.
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=os.path.dirname(path))
    os.close(fd)
    yield tmp
    shutil.copyfile(tmp, path)

  monkeypatch.setattr(container.atomic, "file", leaky_file)
  container.commit({"": b"data"}, str(tmp_path / "b.ardm"))
  assert (tmp_path / "b.ardm").read_bytes() == b"data"
  left = _leftovers(tmp_path, ["a.ardm", "b.ardm", "out"])
  assert len(left) == 1 and left[0].startswith(".tmp-")


# ------------------------------------------------------------------- CLIs ---


def _cli(module, *args):
  return subprocess.run([sys.executable, "-m", f"tf_ardm.{module}", *args], cwd=REPO,
                        capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_cli_round_trip_directory_and_errors(digits_model, digits_coder, digits, tmp_path):
  model_dir = str(tmp_path / "model")
  checkpoints.save(digits_model, model_dir)
  src = tmp_path / "in"
  (src / "sub").mkdir(parents=True)
  for i in range(3):
    Image.fromarray(digits[i, ..., 0].astype(np.uint8), "L").save(src / f"d{i}.png")
  big = np.tile(digits[3, ..., 0], (2, 3))[:13, :21].astype(np.uint8)  # Not 8x8.
  Image.fromarray(big, "L").save(src / "sub" / "big.png")
  np.save(src / "sub" / "batch.npy", digits[:5].astype(np.int16))
  out = _cli("compress", f"--model={model_dir}", "--budget=8", "-v", str(src),
             str(tmp_path / "packed"))
  assert out.returncode == 0, out.stderr[-3000:]
  assert "bits/dim" in out.stdout and "network calls" in out.stdout
  assert (tmp_path / "packed" / "sub" / "big.png.ardm").is_file()
  # Container version 2 of lean streams, the model named once: the model
  # directory's codec is digits_coder's (same weights and calibration), and
  # so are the streams.
  for name, x in [("d0.png", digits[:1]), ("sub/big.png", container.read(
      str(src / "sub" / "big.png"), digits_coder.config)[0]), ("sub/batch.npy", digits[:5])]:
    data = (tmp_path / "packed" / f"{name}.ardm").read_bytes()
    assert data[:5] == b"ARDM\x02", name
    _, fingerprint, streams = container.unpack(data, name)
    assert fingerprint == digits_coder.fingerprint, name
    assert data.count(digits_coder.fingerprint) >= 1
    assert [stream.read_header(s, None, lean=True).budget for s in streams] == [8], name
    expected = (digits_coder.compress_each(x, 8, lean=True) if len(x) == 1
                else [digits_coder.compress(x, 8, lean=True)])
    assert streams == expected, name
  out = _cli("decompress", f"--model={model_dir}", str(tmp_path / "packed"),
             str(tmp_path / "back"))
  assert out.returncode == 0, out.stderr[-3000:]
  for name in ("d0.png", "d2.png", "sub/big.png"):
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "back" / name)),
                                  np.asarray(Image.open(src / name)))
  assert (tmp_path / "back/sub/batch.npy").read_bytes() == (src / "sub/batch.npy").read_bytes()

  # A corrupted file: one-line error, exit 2, and no output at all.
  packed = tmp_path / "packed" / "sub" / "big.png.ardm"
  data = packed.read_bytes()
  packed.write_bytes(data[:-3] + bytes([data[-3] ^ 0x10]) + data[-2:])
  out = _cli("decompress", f"--model={model_dir}", str(tmp_path / "packed"),
             str(tmp_path / "back2"))
  assert out.returncode == 2 and out.stderr.startswith("error: ")
  assert len(out.stderr.strip().splitlines()) == 1 and "big.png.ardm" in out.stderr
  assert _leftovers(tmp_path, ["back", "in", "model", "packed"]) == []


@pytest.mark.slow
def test_cli_text_round_trip(tmp_path):
  model_dir = str(tmp_path / "model")
  checkpoints.save(_model(tiny_config("text", shape=(TEXT_LEN, 1), num_classes=28)),
                   model_dir)
  text = b"the quick brown fox jumps over the lazy dog " * 5 + b"\n"
  (tmp_path / "a.txt").write_bytes(text)
  out = _cli("compress", f"--model={model_dir}", "--budget=4", str(tmp_path / "a.txt"),
             str(tmp_path / "a.ardm"))
  assert out.returncode == 0, out.stderr[-3000:]
  out = _cli("decompress", f"--model={model_dir}", str(tmp_path / "a.ardm"),
             str(tmp_path / "a.out"))
  assert out.returncode == 0, out.stderr[-3000:]
  assert (tmp_path / "a.out").read_bytes() == text


# ------------------------------------------------- logistic-mixture output ---
@pytest.fixture(scope="module", params=["oa", "upscale"])
def mixture_coder(request):
  """An untrained photos-like model (4x4x3, K = 256) with the logistic mixture
  output (M = 4): order-agnostic, or Upscale-16 with the data parametrisation."""
  kwargs = dict(model_type="upscale", branching=16) if request.param == "upscale" else {}
  config = ModelConfig("photos", "image", [4, 4, 3], 256, "unet",
                       dict(channels=8, num_res_blocks=0),
                       output_distribution="logistic_mixture", num_mixtures=4, **kwargs)
  model = _model(config, seed=3)
  # Random output weights: the zero-initialised head would code every
  # model alike (near-uniform); these give the mixtures shape.
  out = model.ema.network.network.out_conv.kernel
  out.assign(np.random.default_rng(0).normal(0.0, 0.3, out.shape).astype(np.float32))
  return _coder(model, np.random.default_rng(1).integers(0, 256, (8, 4, 4, 3)))


def test_logistic_mixture_models_round_trip_at_their_integer_code_length(mixture_coder,
                                                                          patches):
  """The codec codes a logistic-mixture model through its integer head
  (networks.integer.IntegerLogisticMixture): exact round trips, XLA and
  plain ops alike, and the integer code length near the float model's
  exact one: within 5% in all, as for the categorical untrained model
  above, whose integer U-Net body dominates the difference (the head's own
  error is below 1e-3 bits a value: tests/networks/test_logistic_mixture.py)."""
  x = patches[:5]
  for budget in (1, 7):
    streams = mixture_coder.compress_each(x, budget)
    np.testing.assert_array_equal(mixture_coder.decompress_each(streams), x)
    integer_bits = mixture_coder.integer_bits(x, budget)
    exact = mixture_coder.exact_bits(x, budget)
    print(f"budget {budget}: integer {integer_bits.sum():.2f} bits, "
          f"float {exact.sum():.2f}, ratio {integer_bits.sum() / exact.sum():.5f}")
    assert abs(integer_bits.sum() / exact.sum() - 1) < 0.05, (integer_bits, exact)
  _check_xla_off(mixture_coder, x[:3], 3)
