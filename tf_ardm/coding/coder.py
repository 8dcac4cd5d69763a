"""The numpy-facing API of the lossless codec: `Coder` and `load`.

`load(path)` opens a codec export (tf_ardm.coding.codec.export) or a trained
model directory and gives a `Coder`: numpy data and bytes in, errors as
`UserError`, over the codec functions of tf_ardm.coding.codec (see its doc
for the functions, the streams and their portability).

Start-up: an export's functions load lazily (tf_ardm.serving.lazy_export):
only the FunctionDefs that the coder calls, with the integer network's
switch pinned to the variant that `use_xla` and `direct_conv` pick
(tf_ardm.coding.variants), so a command's first call instantiates one network
graph rather than all the export's functions. An export that LazyExport
can't read falls back to tf.saved_model.load (`open_export`). This module
imports no model-building code (Keras, TFP): `load` imports it only to
build a codec from a trained model directory.
"""
import os

from absl import logging
from google.protobuf.message import DecodeError
import numpy as np
import tensorflow as tf

from tf_ardm import errors
from tf_ardm.coding import range_coder  # pylint: disable=unused-import (registers the coder ops)
from tf_ardm.coding import stream
from tf_ardm.coding import variants
from tf_ardm.config import ModelConfig
from tf_ardm.data import validation
from tf_ardm.errors import UserError
from tf_ardm.serving import lazy_export


def load(path, max_batch=None):
  """A `Coder` for a codec export or a trained model directory.

  path: a codec SavedModel, an export root holding one in `codec/`
  (tf_ardm.cli.exports), or a trained model directory (<workdir>/model), from
  which the codec is built in memory (calibrated on
  tf_ardm.coding.codec.calibration_data, with `max_batch`); an export brings
  its own. Streams decode with any build of
  the same integer model: the export, or the same model directory.
  """
  if os.path.isfile(os.path.join(path, "codec", "saved_model.pb")):
    path = os.path.join(path, "codec")
  if os.path.isfile(os.path.join(path, "saved_model.pb")):
    module, config = open_export(path)
    if not hasattr(module, "decompress_solid"):
      raise UserError(f"{path} is a SavedModel without the codec functions; pass "
                      "a codec export (tf_ardm.coding.codec.export) or the trained model "
                      "directory (<workdir>/model)")
    if not hasattr(module, "code_length"):
      raise UserError(f"{path} is a codec export of stream format 1 (float arithmetic); "
                      f"this codec writes format {stream.VERSION}: export the model again "
                      "(python -m tf_ardm.export), or read its streams with " +
                      stream.FORMAT_1_READER)
    return Coder(module, config)
  # Building a codec needs the model code (Keras, TFP): imported only here.
  from tf_ardm.coding import codec  # pylint: disable=import-outside-toplevel
  from tf_ardm.models import checkpoints  # pylint: disable=import-outside-toplevel
  if checkpoints.is_model_dir(path):
    model = checkpoints.restore(path)
    return Coder(codec.Codec(model, codec.calibration_data(model.config), max_batch),
                 model.config)
  raise UserError(f"{path} is neither a codec export (saved_model.pb, or codec/ of an "
                  f"export root) nor a trained model directory ({checkpoints.CONFIG})")


# The functions that a Coder calls (log_prob for exact_bits, with -v).
CODER_FUNCTIONS = ("config", "codec_info", "encode", "decode", "code_length", "log_prob")


def open_export(path):
  """(functions, ModelConfig) of the SavedModel in `path`, for a Coder.

  A `lazy_export.LazyExport` when it can load CODER_FUNCTIONS (each loads
  on first use, in a fraction of a second), else, for an export that it
  can't read or that lacks one of them, what servable.load gives
  (tf.saved_model.load, about 10 s for digits on the 2-core CPU; UserError
  for an export that does not load).
  """
  try:
    module = lazy_export.LazyExport(path)
    missing = module.unsupported(CODER_FUNCTIONS)
    if missing is None:
      return module, ModelConfig.from_json(module.config().numpy().decode())
    why = missing
  except (OSError, ValueError, DecodeError, tf.errors.OpError) as e:
    why = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
  logging.info("loading %s with tf.saved_model.load, not lazily (%s)", path, why)
  from tf_ardm.serving import servable  # pylint: disable=import-outside-toplevel
  return servable.load(path)


# Jobs of at least this many position-calls run the integer network under
# XLA when the Coder chooses (set_xla(None)). Measured on the 2-core CPU,
# compilation costs a few seconds more than plain TF's first call and XLA
# then saves 2-10 us per position-call (digits, text, photos): it pays off
# from roughly 0.1-1 M position-calls on.
AUTO_XLA_WORK = 2**18


class Coder:
  """Numpy data and bytes over a Codec or its loaded export.

  Data are integer arrays [N, *shape] with values in [0, K); a budget is the
  network calls per datapoint and stage, in [1, D]. Streams are in the full
  framing of tf_ardm.coding.stream, or with `lean=True` in the lean one
  (the caller then knows the model: `fingerprint`). Invalid input and
  invalid streams raise UserError, before any network call for input.
  `calls` counts the network calls made (batches of at most max_batch
  datapoints, times budget, times the number of stages S).
  """

  def __init__(self, module, config):
    self.module, self.config = module, config
    self.shape, self.num_steps = tuple(config.shape), config.num_steps
    self.num_stages = config.num_stages
    info = module.codec_info()
    self.fingerprint = info["fingerprint"].numpy()
    self.arithmetic = int(info["arithmetic"])
    if self.arithmetic != stream.ARITHMETIC:
      raise UserError(f"the codec export computes arithmetic {self.arithmetic}, this "
                      f"tf_ardm arithmetic {stream.ARITHMETIC}: export the model again "
                      "(python -m tf_ardm.export), or use "
                      f"{stream.RETIRED.get(self.arithmetic, 'the release that made it')}")
    self.max_batch = int(info["max_batch"])
    self.max_solid = int(info["max_solid"])
    self.calls = 0  # Network calls made by compress* and decompress*.
    self.xla = None  # Auto: set_xla.
    # Conv kernels are exact on CPU; GPU libraries may use Winograd or FFT.
    self.set_direct_conv(not tf.config.list_logical_devices("GPU"))

  def check_data(self, x):
    """x as int32 [N, *shape]; UserError for a wrong shape, type or range."""
    return validation.check_datapoints(x, self.shape, self.config.num_classes)

  def check_budget(self, budget):
    """budget as int; UserError unless 1 <= budget <= D."""
    if not 1 <= int(budget) <= self.num_steps:
      raise UserError(f"the budget must lie in [1, D = {self.num_steps}], got {budget}")
    return int(budget)

  def set_xla(self, enabled):
    """Runs the integer network under XLA (True), as plain TF ops (False), or
    (None, the default) under XLA for jobs of at least AUTO_XLA_WORK
    position-calls (datapoints x positions x network calls), where its
    faster calls repay its compilation (seconds), and plain TF below.

    Every choice gives the same frequencies to the bit; this only changes speed.
    """
    self.xla = None if enabled is None else bool(enabled)
    if self.xla is not None:
      self.module.use_xla.assign(self.xla)

  def set_direct_conv(self, enabled):
    """Runs the integer network's 3x3 convolutions as conv kernels (the
    default without a GPU) or as im2col matmuls (with one).

    Both give the same frequencies to the bit on CPU; im2col is the form
    that is exact on every device (fixed_point.conv3x3).
    """
    self.module.direct_conv.assign(bool(enabled))

  def _run(self, fn, *args, names=None):
    try:
      return fn(*args)
    except tf.errors.InvalidArgumentError as e:
      raise errors.from_tf_error(e, names) from None

  def _function(self, name):
    """Codec function `name` ('encode', 'decode' or 'code_length').

    From a LazyExport, the function loaded for the network variant that the
    variables use_xla and direct_conv pick now (their switch pinned to its
    branch: variants.index), so its first call instantiates one variant
    of the integer network, not all four.
    """
    if isinstance(self.module, lazy_export.LazyExport):
      variant = variants.index(int(self.module.use_xla.numpy()),
                               int(self.module.direct_conv.numpy()))
      try:
        return self.module.function(name, case_branch=variant)
      except ValueError:  # No such switch in this export: all variants then.
        return self.module.function(name)
    return getattr(self.module, name)

  def _code(self, name, n, budget, *args, names=None):
    """Runs coding function `name` on n datapoints, counting its network calls."""
    if self.xla is None:
      work = n * int(np.prod(self.shape)) * self.num_stages * budget
      if bool(self.module.use_xla.numpy()) != (work >= AUTO_XLA_WORK):
        self.module.use_xla.assign(work >= AUTO_XLA_WORK)
    out = self._run(self._function(name), *args, names=names).numpy()
    self.calls += self.num_stages * budget * -(-n // self.max_batch)
    return out

  def parts(self, n):
    """Slices of n datapoints, one per call or solid stream: at most
    max_solid datapoints each."""
    return [slice(i, i + self.max_solid) for i in range(0, n, self.max_solid)]

  def compress(self, x, budget, lean=False):
    """One solid stream (bytes) for x [N, *shape], N <= max_solid."""
    x, budget = self.check_data(x), self.check_budget(budget)
    if len(x) > self.max_solid:
      raise UserError(f"a solid stream holds at most {self.max_solid} datapoints, "
                      f"got {len(x)}")
    return self._code("encode", len(x), budget, x, budget, True, lean)[0]

  def decompress(self, data, lean=False):
    """The data int32 [N, *shape] of one solid (or single) stream."""
    header = stream.read_header(data, self.fingerprint, lean)
    return self._code("decode", header.count, header.budget,
                      tf.constant([data], tf.string), True, lean, names=[None])

  def compress_each(self, x, budget, lean=False):
    """One stream (bytes) per datapoint of x [N, *shape]."""
    x, budget = self.check_data(x), self.check_budget(budget)
    out = []
    for part in self.parts(len(x)):
      out += list(self._code("encode", len(x[part]), budget, x[part], budget,
                             False, lean))
    return out

  def decompress_each(self, streams, names=None, lean=False):
    """x int32 [N, *shape] from single-datapoint streams (any budgets).

    names[i] names stream i in error messages (default 'stream i').
    """
    names = names or [f"stream {i}" for i in range(len(streams))]
    x = np.zeros([len(streams), *self.shape], np.int32)
    groups = {}
    for i, data in enumerate(streams):
      try:
        header = stream.read_header(data, self.fingerprint, lean)
      except UserError as e:
        raise UserError(f"{names[i]}: {e}") from None
      groups.setdefault(header.budget, []).append(i)
    for budget, ids in groups.items():
      for part in self.parts(len(ids)):
        batch = ids[part]
        x[batch] = self._code("decode", len(batch), budget,
                              tf.constant([streams[i] for i in batch], tf.string), False,
                              lean, names=[names[i] for i in batch])
    return x

  def exact_bits(self, x, budget):
    """The float model's exact code length in bits, float64 [N], for the same
    orders and policies: -log2 p(x | sigma, policy(budget)), summed over the
    stages of an Upscale model (the servable's log_prob times D)."""
    x, budget = self.check_data(x), self.check_budget(budget)
    bits = [self._run(self.module.log_prob, x[part], budget)["bits_per_dim"].numpy()
            for part in self.parts(len(x))]
    return np.concatenate(bits or [np.zeros([0])]).astype(np.float64) * self.num_steps

  def integer_bits(self, x, budget):
    """The integer model's code length in bits, float64 [N]: what the
    streams' payloads approach (Codec.code_length)."""
    x, budget = self.check_data(x), self.check_budget(budget)
    bits = [self._run(self._function("code_length"), x[part], budget).numpy()
            for part in self.parts(len(x))]
    return np.concatenate(bits or [np.zeros([0])]).astype(np.float64)
