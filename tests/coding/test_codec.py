"""Lossless codec: range coder, stream format, round trips, determinism, fuzzing,
Upscale models, CLIs."""
import contextlib
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

from conftest import ConstantLogits, tiny_config
from tf_ardm.models import checkpoints
from tf_ardm.coding import codec as codec_lib
from tf_ardm.coding import range_coder as coding
from tf_ardm.coding import container
from tf_ardm.coding import crc
from tf_ardm.generation import distributions
from tf_ardm.cli import exports
from tf_ardm import models
from tf_ardm.coding import stream
from tf_ardm.coding import varint
from tf_ardm.config import ModelConfig
from tf_ardm.data import datasets
from tf_ardm import errors
from tf_ardm.errors import UserError
from tf_ardm.models.ardm import Denoiser
from tf_ardm.models.upscale import UpscaleDenoiser

from conftest import REPO  # pylint: disable=g-bad-import-order
TEXT_LEN = 32


def _model(config, seed=0):
  """An untrained model with made-up loss components (all budgets allowed)."""
  tf.keras.utils.set_random_seed(seed)
  model = models.build(config)
  d = config.num_steps
  model.heldout_loss_components = np.tile(np.linspace(2.0, 0.1, d, dtype=np.float32) / d,
                                          config.num_stages)
  return model


def _coder(model, **kwargs):
  return codec_lib.Coder(codec_lib.Codec(model, **kwargs), model.config)


@pytest.fixture(scope="module")
def digits():
  return datasets.load("digits").splits["test"]


@pytest.fixture(scope="module")
def digits_model():
  return _model(tiny_config(shape=(8, 8, 1), num_classes=17))


@pytest.fixture(scope="module")
def digits_coder(digits_model):
  return _coder(digits_model)


@pytest.fixture(scope="module")
def text_coder():
  return _coder(_model(tiny_config("text", shape=(TEXT_LEN, 1), num_classes=28)))


def _constant_coder(logits, shape=(4, 4, 1)):
  """A codec whose network gives the same logits [K] everywhere."""
  model = _model(tiny_config(shape=shape, num_classes=len(logits)))
  model.ema = Denoiser(model.config, ConstantLogits(logits))
  return _coder(model)


# ------------------------------------------------------------ range coder ---


def _ideal_bits(symbols, probs):
  """-sum log2 probs[symbol] over all symbols int32 [B, n], probs [B, n, K]."""
  p = np.take_along_axis(probs.numpy().astype(np.float64), symbols.numpy()[..., None], -1)
  return -np.log2(p).sum()


def _quantized_bits(symbols, probs):
  """What `coding.encode` would cost with an exact arithmetic coder: -sum log2
  of each binary decision's probability, level c of its table row c - 1 being
  P(bit = 0) = c / 2^16 (CERTAIN: 1)."""
  levels, symbols = coding.node_levels(probs).numpy(), symbols.numpy()
  nb = coding.num_bits(probs.shape[-1])
  total = 0.0
  for depth in range(nb):
    node = 2**depth - 1 + (symbols >> (nb - depth))
    p0 = (np.take_along_axis(levels, node[..., None], -1)[..., 0] + 1.0) / coding.SCALE
    bit = (symbols >> (nb - 1 - depth)) & 1
    total -= np.log2(np.where(bit == 0, p0, 1.0 - p0)).sum()
  return total


@pytest.mark.parametrize("num_classes", [2, 5, 17, 28, 256])
def test_range_coder_round_trip_and_size(num_classes):
  rng = np.random.default_rng(num_classes)
  logits = rng.normal(size=(3, 200, num_classes)).astype(np.float32) * 4
  probs = tf.nn.softmax(logits)
  cdf = np.cumsum(probs.numpy().astype(np.float64), -1)
  symbols = np.minimum((cdf < rng.random((3, 200, 1))).sum(-1), num_classes - 1)
  symbols = tf.constant(symbols, tf.int32)

  @tf.function
  def round_trip(shape):
    handle = coding.encode(coding.encoder(shape), symbols, probs)
    strings = coding.finish_encoder(handle)
    handle, decoded = coding.decode(coding.decoder(strings), probs)
    return strings, decoded, coding.finish_decoder(handle)

  for shape in ([3], []):  # A stream per row, then one stream for all.
    strings, decoded, ok = round_trip(tf.constant(shape, tf.int32))
    np.testing.assert_array_equal(decoded, symbols)
    assert np.all(ok)
    coded = 8 * sum(len(s) for s in np.reshape(strings.numpy(), [-1]))
    ideal, quantized = _ideal_bits(symbols, probs), _quantized_bits(symbols, probs)
    assert abs(quantized - ideal) < 1e-4 * ideal + 0.01
    assert ideal - 8 <= coded <= quantized * 1.001 + 8 * len(np.reshape(strings, [-1]))


def test_decoding_garbage_stays_in_range():
  probs = tf.fill([2, 50, 17], 1.0 / 17)
  handle, decoded = coding.decode(coding.decoder(tf.constant([b"\xff" * 40, b""])), probs)
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
  assert (header.budget, header.count) == (budget, 1)
  assert stream.read_header(solid, digits_coder.fingerprint).count == 20
  # The header's CRC is zlib's CRC-32 of the values, one byte each.
  assert streams[3][header.size - 4:header.size] == zlib.crc32(
      x[3].astype(np.uint8).tobytes()).to_bytes(4, "big")


@pytest.mark.parametrize("budget", [1, 8, TEXT_LEN])
def test_text_round_trip(text_coder, budget):
  x = datasets.load("text", seq_len=TEXT_LEN).splits["test"][:20]
  np.testing.assert_array_equal(text_coder.decompress_each(text_coder.compress_each(x, budget)), x)
  np.testing.assert_array_equal(text_coder.decompress(text_coder.compress(x, budget)), x)


def test_random_constant_and_extreme_inputs(digits_coder):
  rng = np.random.default_rng(1)
  x = np.stack([rng.integers(0, 17, (8, 8, 1)), np.zeros((8, 8, 1)),
                np.full((8, 8, 1), 16), np.arange(64).reshape(8, 8, 1) % 17]).astype(np.int32)
  np.testing.assert_array_equal(digits_coder.decompress_each(digits_coder.compress_each(x, 5)), x)
  assert digits_coder.decompress(digits_coder.compress(x[:0], 3)).shape == (0, 8, 8, 1)


def test_uniform_logits_cost_log2_k_bits():
  """All-zero logits: each symbol costs log2 K bits ideally; the payload matches."""
  coder = _constant_coder(np.zeros(17, np.float32))
  x = np.random.default_rng(2).integers(0, 17, (48, 4, 4, 1)).astype(np.int32)
  data = coder.compress(x, 4)
  payload_bits = 8 * (len(data) - stream.read_header(data, coder.fingerprint).size)
  ideal = x.size * np.log2(17)
  # Overheads: the 16-bit quantization of P(bit = 0) and at most a flush byte.
  assert ideal - 1 <= payload_bits <= ideal * (1 + 1e-5) + 8
  np.testing.assert_array_equal(coder.decompress(data), x)


def test_adversarial_probabilities():
  """Symbols the model deems nearly impossible (p = eps) still round-trip."""
  logits = np.zeros(17, np.float32)
  logits[0] = 40.0  # p(0) = 1 - 16 eps; every other class gets eps = 2e-5.
  coder = _constant_coder(logits)
  x = np.stack([np.full((4, 4, 1), 16), np.zeros((4, 4, 1)),
                np.arange(16).reshape(4, 4, 1)]).astype(np.int32)
  streams = coder.compress_each(x, 16)
  np.testing.assert_array_equal(coder.decompress_each(streams), x)
  size = stream.read_header(streams[0], coder.fingerprint).size
  assert 8 * (len(streams[0]) - size) == pytest.approx(16 * -np.log2(2e-5), rel=1e-3, abs=8)
  assert len(streams[1]) - size <= 1  # 16 near-certain symbols: about 0.008 bits.


# ------------------------------------------------------------ determinism ---


def test_batch_single_and_other_batch_sizes_agree(digits_coder, digits):
  x = digits[:37]
  streams = digits_coder.compress_each(x, 8)
  for i in (0, 15, 16, 36):  # Alone: row 0 of its micro-batch.
    assert digits_coder.compress_each(x[i:i + 1], 8) == [streams[i]]
    np.testing.assert_array_equal(digits_coder.decompress_each([streams[i]])[0], x[i])
  for size in (3, 17):
    parts = [digits_coder.decompress_each(streams[i:i + size]) for i in range(0, 37, size)]
    np.testing.assert_array_equal(np.concatenate(parts), x)
  # The single-datapoint tf.functions of the module agree too.
  module = digits_coder.module
  assert module.compress(x[5], 8).numpy() == streams[5]
  np.testing.assert_array_equal(module.decompress(streams[5]), x[5])


def test_many_micro_batches_code_the_same_every_time(digits_coder, digits):
  """Ten micro-batches per step, coded repeatedly: the same bytes each time.

  (TF 2.14's oneDNN kernels gave wrong results or crashed when the micro-
  batches of a step ran concurrently.)
  """
  x = digits[:160]
  first = digits_coder.compress_each(x, 2)
  for _ in range(3):
    assert digits_coder.compress_each(x, 2) == first
  np.testing.assert_array_equal(digits_coder.decompress_each(first), x)


@pytest.mark.slow
def test_export_and_fresh_process_decode(digits_model, digits_coder, digits, tmp_path):
  export_dir = str(tmp_path / "codec")
  codec_lib.export(digits_model, export_dir)
  x = digits[:20]
  streams = digits_coder.compress_each(x, 8)
  solid = digits_coder.compress(x, 8)
  np.save(tmp_path / "x.npy", x)
  with open(tmp_path / "streams.bin", "wb") as f:
    f.write(b"".join(len(s).to_bytes(4, "big") + s for s in streams + [solid]))
  script = textwrap.dedent(f"""
      import numpy as np, tensorflow as tf
      import tensorflow_compression  # Registers the range coder ops.
      loaded = tf.saved_model.load({export_dir!r})
      data, streams, pos = open({str(tmp_path / 'streams.bin')!r}, "rb").read(), [], 0
      while pos < len(data):
        size = int.from_bytes(data[pos:pos + 4], "big")
        streams.append(data[pos + 4:pos + 4 + size])
        pos += 4 + size
      x = np.load({str(tmp_path / 'x.npy')!r})
      assert np.array_equal(loaded.decompress_batch(tf.constant(streams[:-1])), x)
      assert np.array_equal(loaded.decompress_solid(streams[-1]), x)
      assert np.array_equal(loaded.decompress(streams[4]), x[4])
      again = loaded.compress_batch(x, 8).numpy()
      assert list(again) == streams[:-1], "different bytes"
      print("fresh ok")
      """)
  out = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True,
                       text=True, timeout=600)
  assert "fresh ok" in out.stdout, out.stderr[-3000:]


# -------------------------------------------------------- errors and fuzz ---


def _expect_error(coder, data, solid):
  """Decodes mutated data: a UserError, or the original data exactly."""
  try:
    coder.decompress(data) if solid else coder.decompress_each([data])
  except UserError as e:
    assert str(e) and "\n" not in str(e)
    return "error"
  return "decoded"


def _fuzz(coder, x, budget, cases, seed):
  """Decodes `cases` mutations of x's streams: counts of 'error' and 'decoded'."""
  rng = np.random.default_rng(seed)
  originals = [(s, False) for s in coder.compress_each(x, budget)]
  originals.append((coder.compress(x, budget), True))
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
    outcomes[_expect_error(coder, mutated, solid)] += 1
  return outcomes


def test_fuzzed_streams_never_decode(digits_coder, digits):
  outcomes = _fuzz(digits_coder, digits[:6], 4, 300, seed=3)
  assert outcomes["decoded"] == 0, outcomes


def test_wrong_model_and_settings_are_refused(digits_model, digits_coder, digits):
  data = digits_coder.compress_each(digits[:1], 8)[0]
  other = _coder(_model(tiny_config(shape=(8, 8, 1), num_classes=17), seed=1))
  wider = _coder(digits_model, micro_batch=32)
  for coder in (other, wider):
    with pytest.raises(UserError, match="different model"):
      coder.decompress_each([data])
    with pytest.raises(tf.errors.InvalidArgumentError, match="fingerprint mismatch"):
      coder.module.decompress(data)  # The SavedModel function checks too.


def test_bad_input_is_refused(digits_coder, digits):
  x = digits[:2]
  for bad, message in [(x.astype(np.float32), "integer"), (x[:, :4], "shape"),
                       (x + 17, "values"), (x - 1, "values")]:
    with pytest.raises(UserError, match=message):
      digits_coder.compress_each(bad, 8)
  for budget in (0, 65):
    with pytest.raises(UserError, match="budget"):
      digits_coder.compress(x, budget)
  with pytest.raises(tf.errors.InvalidArgumentError, match="x must hold values"):
    digits_coder.module.compress_batch(x + 17, 8)
  with pytest.raises((ValueError, TypeError)):
    digits_coder.module.compress(x, 8)  # [2, 8, 8, 1] is not one datapoint.
  with pytest.raises(UserError, match="share a budget"):
    digits_coder._run(digits_coder.module.decompress_batch, tf.constant(
        [digits_coder.compress_each(x[:1], 2)[0], digits_coder.compress_each(x[:1], 3)[0]]))


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
def upscale_coder(upscale_model):
  return _coder(upscale_model)


@pytest.fixture(scope="module")
def patches():
  x = np.random.default_rng(5).integers(0, 256, (16, 4, 4, 3))
  x[1], x[2] = 0, 255  # Extreme values: digits all 0 or all b - 1.
  return x.astype(np.int32)


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


def test_upscale_stream_length_is_the_exact_code_length(upscale_coder, patches):
  """A solid stream's payload against -log2 p(x | sigma, policies) of the model.

  Budget per component: the smoothing of the coded choices (at most
  -log2(1 - eps*A) bits a symbol, A = b = 16), the 16-bit levels and one
  coder flush (at most 2 bytes).
  """
  for budget in (1, 48):
    exact = upscale_coder.exact_bits(patches, budget).sum()
    data = upscale_coder.compress(patches, budget)
    payload = 8 * (len(data) - stream.read_header(data, upscale_coder.fingerprint).size)
    symbols = patches.size * upscale_coder.num_stages
    smoothing = -symbols * np.log2(1 - distributions.EPSILON * 16)
    print(f"{upscale_coder.config.parametrization} budget {budget}: exact {exact:.2f} bits, "
          f"payload {payload} bits, payload / exact {payload / exact:.6f}")
    assert exact - 1e-4 * exact <= payload <= exact + smoothing + 1e-4 * exact + 16


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
  coder = _coder(model)
  np.testing.assert_array_equal(coder.module.policy(3), [[0, 0, 0]] * 4)
  x = np.random.default_rng(6).integers(0, 256, (40, 2, 2, 3)).astype(np.int32)
  np.testing.assert_allclose(coder.exact_bits(x, 3), 8 * 12, rtol=1e-5)
  data = coder.compress(x, 3)
  payload_bits = 8 * (len(data) - stream.read_header(data, coder.fingerprint).size)
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
  root = str(tmp_path / "export")
  _, codec_dir = exports.write(model, root)
  assert codec_dir == os.path.join(root, "codec")
  loaded = codec_lib.load(root)
  assert loaded.fingerprint == codec_lib.Codec(model).fingerprint
  streams = loaded.compress_each(patches[:4], 5)
  np.testing.assert_array_equal(loaded.decompress_each(streams), patches[:4])
  np.testing.assert_array_equal(loaded.decompress(loaded.compress(patches, 48)), patches)


# -------------------------------------------------------------- .ardm files ---


def test_container_tiles_any_image_and_chunks_text(digits_coder, text_coder, tmp_path):
  config = digits_coder.config
  image = np.random.default_rng(4).integers(0, 17, (13, 21)).astype(np.uint8)
  Image.fromarray(image, "L").save(tmp_path / "odd.png")
  x, original = container.read(str(tmp_path / "odd.png"), config)
  assert x.shape == (2 * 3, 8, 8, 1)
  data = container.pack(original, [digits_coder.compress(x, 2)])
  original, streams = container.unpack(data, "odd.ardm")
  back = Image.open(io.BytesIO(container.rebuild(digits_coder.decompress(streams[0]),
                                                 original, config)))
  np.testing.assert_array_equal(np.asarray(back), image)
  for bad in (data[:-1], data + b"\0", b"ARDM\x07" + data[5:], b"PK" + data[2:]):
    with pytest.raises(UserError):
      container.unpack(bad, "bad.ardm")

  Image.fromarray(np.full((8, 8), 200, np.uint8), "L").save(tmp_path / "bright.png")
  with pytest.raises(UserError, match=r"values must lie in \[0, 17\)"):
    container.read(str(tmp_path / "bright.png"), config)
  Image.fromarray(np.zeros((8, 8, 3), np.uint8), "RGB").save(tmp_path / "rgb.png")
  with pytest.raises(UserError, match="mode RGB"):
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
def test_cli_round_trip_directory_and_errors(digits_model, digits, tmp_path):
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
