"""integer: whole integer networks built from small random-weight UNets and Transformers.

A fresh U-Net has zero-initialised output projections (trivial outputs), so
every weight is first set to random values; normalisation gammas stay near 1.
"""
import functools
import hashlib

import numpy as np
import pytest
import tensorflow as tf

from conftest import tiny_config
from tf_ardm import networks
from tf_ardm.networks import fixed_point as fp
from tf_ardm.networks import integer
from tf_ardm.networks.unet import UNet

CALIBRATION_SIZE = 64
NAMES = ["unet", "unet_attention", "transformer", "transformer_alibi"]


def _config(name):
  if name == "unet":
    return tiny_config()
  if name == "unet_attention":
    # Attention after every block, 2 heads, 3 sub-pixels (three embedding tables).
    config = tiny_config(shape=(4, 4, 3), num_classes=7)
    config.network_kwargs.update(attention_every_block=True, num_heads=2)
    return config
  config = tiny_config("text", shape=(16, 1), num_classes=28)
  if name == "transformer_alibi":
    config.network_kwargs["position_bias"] = "alibi"
  return config


def _inputs(config, n, seed):
  """Network inputs like the codec's: x_in int32 [n, *shape], t int32 [n], mask int32."""
  rng = np.random.default_rng(seed)
  x = rng.integers(0, config.input_classes, [n, *config.shape]).astype(np.int32)
  t = rng.integers(0, config.total_steps, [n]).astype(np.int32)
  known_fraction = rng.random([n] + [1] * len(config.shape))  # Per row.
  mask = rng.random([n, *config.shape]) < known_fraction
  return x, t, mask.astype(np.int32)


def _randomize(net, seed):
  """Random weights everywhere; normalisation gammas near 1, betas near 0."""
  rng = np.random.default_rng(seed)
  for v in net.weights:
    if "gamma" in v.name:
      v.assign(1.0 + rng.normal(0, 0.1, v.shape))
    elif "beta" in v.name:
      v.assign(rng.normal(0, 0.1, v.shape))
    else:
      v.assign(rng.normal(0, 0.3, v.shape))


def _float_net(name, seed=0):
  config = _config(name)
  net = networks.build(config)
  x, t, mask = _inputs(config, 2, 99)
  net(x, t, tf.cast(mask, tf.float32))  # Builds the weights.
  _randomize(net, seed)
  return config, net


@functools.lru_cache(maxsize=None)
def _model(name):
  """(config, float network, integer network) shared by the tests of this module."""
  config, net = _float_net(name)
  return config, net, integer.quantize(net, *_inputs(config, CALIBRATION_SIZE, 1))


def _float_logits(net, x, t, mask):
  return net(x, t, tf.cast(mask, tf.float32)).numpy()


@functools.lru_cache(maxsize=None)
def _functions(name):
  """The integer network of `_model(name)` as a plain and an XLA tf.function, any batch.

  Cached: tracing a U-Net takes seconds and XLA compiles once per batch size.
  """
  config, _, int_net = _model(name)
  specs = [tf.TensorSpec([None, *config.shape], tf.int32), tf.TensorSpec([None], tf.int32),
           tf.TensorSpec([None, *config.shape], tf.int32)]
  return (tf.function(int_net.__call__, jit_compile=False, input_signature=specs),
          tf.function(int_net.__call__, jit_compile=True, input_signature=specs))


@pytest.mark.parametrize("name", NAMES)
def test_integer_logits_are_close_to_the_float_network(name):
  config, net, int_net = _model(name)
  x, t, mask = _inputs(config, 64, 2)
  logits = int_net(x, t, mask).numpy()
  assert logits.dtype == np.int64
  assert logits.shape == (64, *config.shape, config.output_classes)
  expected = _float_logits(net, x, t, mask)
  spread = expected.std()
  assert spread > 0.5, spread  # Random weights: far from the trivial zero output.
  err = np.abs(logits * 2.0**-fp.TABLE_EXPONENT - expected)
  # Matmul inputs are narrowed to 9 bits: a random U-Net's logits are within
  # about 2-3% (the trained zoo models code within 1% of the float ones:
  # tests/coding/test_codec.py), the Transformer's within 1%.
  tolerance = 1e-2 if name.startswith("transformer") else 4e-2
  assert err.mean() < tolerance * spread and err.max() < 0.3 * spread, (
      err.mean(), err.max(), spread)


@pytest.mark.parametrize("name", NAMES)
def test_each_row_is_bit_identical_at_every_batch_size(name):
  config, _, int_net = _model(name)
  x, t, mask = _inputs(config, 64, 3)
  full = int_net(x, t, mask).numpy()
  for rows in (slice(0, 7), slice(57, 64)):
    np.testing.assert_array_equal(int_net(x[rows], t[rows], mask[rows]).numpy(), full[rows])
  for r in range(7):
    np.testing.assert_array_equal(int_net(x[r:r + 1], t[r:r + 1], mask[r:r + 1]).numpy()[0],
                                  full[r])
  # Compiled by XLA for batches of 7 and of 64: the same rows again.
  _, xla = _functions(name)
  for rows in (slice(0, 7), slice(57, 64), slice(0, 64)):
    np.testing.assert_array_equal(xla(x[rows], t[rows], mask[rows]).numpy(), full[rows])


@pytest.mark.parametrize("name", NAMES)
def test_xla_plain_and_eager_are_bit_identical(name):
  config, _, int_net = _model(name)
  x, t, mask = _inputs(config, 64, 4)
  eager = int_net(x, t, mask).numpy()
  plain, xla = _functions(name)
  np.testing.assert_array_equal(plain(x, t, mask).numpy(), eager)
  np.testing.assert_array_equal(xla(x, t, mask).numpy(), eager)
  np.testing.assert_array_equal(plain(x[:7], t[:7], mask[:7]).numpy(), eager[:7])


def _zero_output_layers(net):
  """The layers a fresh UNet initialises to zero: each ResBlock's conv2, attention outputs."""
  blocks = [net.down, [(net.mid[0], net.mid[1]), (net.mid[2], None)], net.up]
  pairs = [pair for group in blocks for pair in group]
  return ([res.conv2 for res, _ in pairs]
          + [att.attention.out for _, att in pairs if att is not None])


@pytest.mark.parametrize("name", ["unet", "unet_attention"])
def test_zero_initialised_layers_keep_the_integer_unet_close(name):
  # As in a fresh (untrained) UNet: conv2 of every ResBlock and the attention outputs are 0.
  config, net = _float_net(name, seed=8)
  for layer in _zero_output_layers(net):
    for v in layer.weights:
      v.assign(tf.zeros_like(v))
  int_net = integer.quantize(net, *_inputs(config, CALIBRATION_SIZE, 1))
  x, t, mask = _inputs(config, 64, 2)
  expected = _float_logits(net, x, t, mask)
  err = np.abs(int_net(x, t, mask).numpy() * 2.0**-fp.TABLE_EXPONENT - expected)
  assert expected.std() > 0.3
  assert err.mean() < 3e-2 * expected.std(), (err.mean(), expected.std())


def _digest(arrays):
  digest = hashlib.sha256()
  for a in arrays:
    digest.update(np.ascontiguousarray(a).tobytes())
  return digest.hexdigest()


@pytest.mark.parametrize("name", ["unet", "transformer_alibi"])
def test_arrays_are_deterministic(name):
  config, net = _float_net(name, seed=5)
  calibration = _inputs(config, CALIBRATION_SIZE, 6)
  nets = [integer.quantize(net, *calibration) for _ in range(2)]  # Both alive at once.
  first, second = nets[0].arrays(), nets[1].arrays()
  assert len(first) == len(second) > 10
  for a, b in zip(first, second):
    assert a.dtype == b.dtype and a.dtype in (np.uint8, np.int64)
    np.testing.assert_array_equal(a, b)
  assert _digest(first) == _digest(second)
  # The arrays do depend on the weights: another kernel, another digest.
  kernel = next(v for v in net.weights if "kernel" in v.name)
  kernel.assign(kernel * 1.5)
  assert _digest(integer.quantize(net, *calibration).arrays()) != _digest(first)


def test_integer_network_stores_integer_constants_only():
  _, net, int_net = _model("unet")
  assert int_net.calibrated
  # Besides the float network it refers to, only non-trainable integer constants.
  float_ids = {id(v) for v in net.variables}
  own = [v for v in int_net.variables if id(v) not in float_ids]
  assert len(own) > 10 and not any(v.trainable for v in own)
  dtypes = {v.dtype for v in own}  # The smallest type that holds each array.
  assert tf.int16 in dtypes and dtypes <= {tf.int16, tf.int32, tf.int64}
  # Shared tables are stored once: no two variables hold the same array.
  contents = [(tuple(v.shape), v.numpy().astype(np.int64).tobytes()) for v in own]
  assert len(set(contents)) == len(contents)


class _FixedLogits(integer.IntegerNetwork):
  """Integer logits 0, 1, ..., K-1 at every position; records its calls."""

  def __init__(self, num_classes):
    super().__init__()
    self.k, self.calls = num_classes, []

  def __call__(self, x_in, t, mask, direct_conv=True):
    self.calls.append(tuple(x_in.shape))
    row = tf.range(self.k, dtype=tf.int64) * 2**fp.TABLE_EXPONENT
    return tf.broadcast_to(row, tf.concat([tf.shape(x_in, out_type=tf.int64), [self.k]], 0))


class _UNetWithOwnInteger(UNet):
  """A UNet that provides its own integer version (takes precedence)."""

  def integer_network(self):
    self.made = _FixedLogits(5)
    return self.made


def test_networks_without_an_integer_version_raise_type_error():
  config = tiny_config()
  inputs = _inputs(config, 3, 7)
  with pytest.raises(TypeError, match="no integer version of Dense"):
    integer.quantize(tf.keras.layers.Dense(4), *inputs)
  net = _UNetWithOwnInteger(config.shape, config.input_classes, config.output_classes,
                            max_time=config.total_steps, channels=16, num_res_blocks=1)
  int_net = integer.quantize(net, *inputs)
  assert int_net is net.made and int_net.calls == [(3, 4, 4, 1)]  # Calibrated once.
  logits = int_net(*inputs).numpy()
  assert logits.shape == (3, 4, 4, 1, 5) and (logits[1, 2, 3, 0] == np.arange(5) * 1024).all()
