"""Lossless compression with a trained ARDM (spec §5, spec/coding.md).

`Codec` is the servable module (`tf_ardm.serving.servable`) plus these tf.functions
(x int32 with values in [0, K); budget int32 scalar in [1, D], the network
calls per datapoint and stage, as for the servable's log_prob: an OA model
has one stage, an Upscale model S; streams in the format of
`tf_ardm.coding.stream`):

  compress(x [*shape], budget) -> stream string []
  decompress(stream []) -> x [*shape]
  compress_batch(x [B, *shape], budget) -> streams [B], one per datapoint
  decompress_batch(streams [B]) -> x [B, *shape]; the streams must share a
      budget and hold one datapoint each
  compress_solid(x [N, *shape], budget) -> stream [], all N in one stream
      (one header and flush for the set; N <= max_solid)
  decompress_solid(stream []) -> x [N, *shape]
  encode(x [N, *shape], budget, solid bool, lean bool) / decode(streams [S],
      solid, lean): the two functions that all of the above call; lean
      streams use the lean framing (the caller knows the model)
  code_length(x [N, *shape], budget) -> float64 [N], the integer model's
      ideal code length in bits
  codec_info() -> fingerprint string (4 bytes), arithmetic, max_batch, max_solid
The functions raise InvalidArgumentError with a one-line reason for invalid
input (before any network call) and for invalid streams. Signatures with
these names exist as well (outputs named output_0 where there is one).

Encoding follows the stages s = 0..S-1 in generation order (coarse to
fine; S = 1 for OA) and, within stage s, its fixed order sigma_s and its
DP-optimal policy for the budget (`Servable._stage_policies`): one
tf.while_loop over the S*k policy steps makes one network call per batch of
at most max_batch datapoints and codes the step's group of positions (the
same group for every datapoint, as sigma_s is shared) with one range coder
op per bit level (`tf_ardm.coding.range_coder`). A position's symbol is its
choice among the A values the stage can give it (the denoiser's `choice`:
OA, the K classes; Upscale, the values that downscale to x_past, see
`tf_ardm.models.upscale.StageSpace`). TFC's coder is first-in first-out, so
the encoder codes in decoding order. The decoder mirrors the loop,
re-encodes what it decodes, and fails unless the data CRC matches and the
re-encoded stream equals its input byte for byte, so a corrupted, truncated,
extended or foreign stream raises InvalidArgumentError and never yields
wrong data.

Portability (docs/integer_coding.md): the coding distributions come from the
integer version of the EMA network (tf_ardm.networks.integer, calibrated on
`calibration_data`) and the denoiser's `choice_frequencies`, in exact integer
arithmetic from the input values to the coder's levels. So a stream decodes
to the same data on every TF build, device, kernel library, thread count and
batch size, with or without XLA (`use_xla`), with conv kernels or im2col
matmuls (`direct_conv`: the Coder turns it off where a GPU is visible). The
stream stays within a fraction of a percent of the integer model's code
length (`code_length`), which is within a percent of the float model's exact
code length -log2 p(x | sigma, policies) (`Coder.exact_bits`). The fingerprint
(SHA-256 of the config, orders, policy tables, coding settings and the
integer network's arrays) ties streams to one integer model.

`export` writes the codec SavedModel. `tf_ardm.coding.coder` holds the
numpy-facing API over a Codec or its export (`Coder`, `load`); it imports
this module only to build a Codec from a trained model, never the reverse.
"""
import functools
import hashlib
import json

import numpy as np
import tensorflow as tf

from tf_ardm.coding import crc
from tf_ardm.coding import range_coder as coding
from tf_ardm.coding import stream
from tf_ardm.coding import variants
from tf_ardm.data import datasets
from tf_ardm.data import validation
from tf_ardm.errors import UserError
from tf_ardm.generation import masks
from tf_ardm.networks import fixed_point
from tf_ardm.networks import integer
from tf_ardm.serving import servable

# Calibration datapoints: the first ones of the training split.
CALIBRATION_SIZE = 64
# Bounds the values a step holds: frequencies and tree levels of all datapoints.
_MAX_STEP_VALUES = 2**27
# Bounds the positions of one network call (rows times D).
_MAX_CALL_POSITIONS = 2**14


def _value_bytes(num_classes):
  """Bytes per value in the data CRC: 1, 2 or 4."""
  return 1 if num_classes <= 2**8 else 2 if num_classes <= 2**16 else 4


def default_max_batch(num_steps):
  """Datapoints per network call: _MAX_CALL_POSITIONS / D, in [1, 256]."""
  return int(max(1, min(256, _MAX_CALL_POSITIONS // num_steps)))


class Codec(servable.Servable):
  """The servable functions plus lossless compress/decompress (see module doc)."""

  def __init__(self, model, calibration, max_batch=None):
    super().__init__(model)
    config = model.config
    self.shape = list(config.shape)
    d, a = self.num_steps, self.denoiser.num_choices
    self.max_batch = int(default_max_batch(d) if max_batch is None else max_batch)
    if self.max_batch < 1:
      raise UserError(f"the codec's batch must be at least 1, got {self.max_batch}")
    self.absorbing = config.absorbing
    self.max_solid = max(1, _MAX_STEP_VALUES // (d * (a + 2**coding.num_bits(a))))
    # Per stage, the position generated at each step: int32 [S, D].
    self.order = tf.constant(np.argsort(self.sigma.numpy(), axis=1).astype(np.int32))
    self.integer = integer.quantize(self.denoiser.network,
                                    *self._calibration_inputs(calibration))
    self.fingerprint = fingerprint(self)
    # The network functions are exact and agree; `use_xla` and `direct_conv`
    # pick one at run time (XLA or plain TF ops; conv kernels, which are exact
    # on CPU, or im2col matmuls, exact on every device: fixed_point.conv3x3).
    self.use_xla = tf.Variable(True, trainable=False, name="use_xla")
    self.direct_conv = tf.Variable(True, trainable=False, name="direct_conv")
    network_spec = [tf.TensorSpec([None, d], tf.int32), tf.TensorSpec([], tf.int32),
                    tf.TensorSpec([d], tf.int32), tf.TensorSpec([], tf.int32)]
    # In switch order: variants.index(use_xla, direct_conv). The XLA variants only
    # call the plain ones (XLA compiles what they call), so an export stores
    # and loads each network graph once.
    plain = [tf.function(functools.partial(self._network_frequencies, direct_conv=direct),
                         jit_compile=False, input_signature=network_spec)
             for direct in (False, True)]
    def compiled(f):
      return tf.function(lambda x_in, t, known, stage: f(x_in, t, known, stage),
                         jit_compile=True, input_signature=network_spec)
    self.network_functions = plain + [compiled(f) for f in plain]
    x_spec = tf.TensorSpec(self.shape, tf.int32, name="x")
    batch_spec = tf.TensorSpec([None, *self.shape], tf.int32, name="x")
    budget_spec = tf.TensorSpec([], tf.int32, name="budget")
    stream_spec = tf.TensorSpec([], tf.string, name="stream")
    streams_spec = tf.TensorSpec([None], tf.string, name="streams")
    solid_spec = tf.TensorSpec([], tf.bool, name="solid")
    lean_spec = tf.TensorSpec([], tf.bool, name="lean")
    self.encode = tf.function(self._encode, input_signature=[
        batch_spec, budget_spec, solid_spec, lean_spec])
    self.decode = tf.function(self._decode, input_signature=[
        streams_spec, solid_spec, lean_spec])
    self.code_length = tf.function(self._code_length, input_signature=[
        batch_spec, budget_spec])
    # The public functions call `encode` and `decode`, which they then share.
    full = tf.constant(False)
    self.compress = tf.function(lambda x, budget: self.encode(x[None], budget, False, full)[0],
                                input_signature=[x_spec, budget_spec])
    self.decompress = tf.function(lambda s: self.decode(s[None], False, full)[0],
                                  input_signature=[stream_spec])
    self.compress_batch = tf.function(lambda x, budget: self.encode(x, budget, False, full),
                                      input_signature=[batch_spec, budget_spec])
    self.decompress_batch = tf.function(lambda streams: self.decode(streams, False, full),
                                        input_signature=[streams_spec])
    self.compress_solid = tf.function(lambda x, budget: self.encode(x, budget, True, full)[0],
                                      input_signature=[batch_spec, budget_spec])
    self.decompress_solid = tf.function(lambda s: self.decode(s[None], True, full),
                                        input_signature=[stream_spec])
    self.codec_info = tf.function(lambda: {
        "fingerprint": tf.constant(self.fingerprint),
        "arithmetic": tf.constant(stream.ARITHMETIC),
        "max_batch": tf.constant(self.max_batch),
        "max_solid": tf.constant(self.max_solid)}, input_signature=[])

  def signatures(self):
    return {**super().signatures(), "compress": self.compress,
            "decompress": self.decompress, "compress_batch": self.compress_batch,
            "decompress_batch": self.decompress_batch,
            "compress_solid": self.compress_solid,
            "decompress_solid": self.decompress_solid, "codec_info": self.codec_info}

  def _network_inputs(self, x_in, t, known, stage):
    """The network's (x_in [B, *shape], t [B], integer mask [B, *shape, M]).

    x_in int32 [B, D]; t int32 [B], the step within the stage; known int
    [B, D]; stage int32 [B]. As `Denoiser.logits` feeds the float network.
    """
    x_in = tf.reshape(x_in, [-1, *self.shape])
    known = tf.cast(tf.reshape(known, tf.shape(x_in)), tf.float32)
    t, mask = self.denoiser.conditioning(t, known, stage)
    return x_in, t, tf.cast(mask, tf.int32)

  def _calibration_inputs(self, x):
    """Network inputs for calibration: datapoints x [N, *shape] at stages
    0, 1, ... and steps spread over [0, D), known where sigma_stage < t."""
    x = validation.check_datapoints(x, self.shape, self.num_classes)
    n, d = len(x), self.num_steps
    if n == 0:
      raise UserError("the codec needs calibration datapoints")
    stage = tf.constant(np.arange(n) % self.num_stages, tf.int32)
    t = tf.constant((np.arange(n) * d) // n, tf.int32)
    x = tf.reshape(tf.constant(x), [n, d])
    x_future, x_past = self.denoiser.stage_inputs(x, stage)
    known = tf.gather(self.sigma, stage) < t[:, None]
    x_in = tf.where(known, x_future, x_past)
    return [v.numpy() for v in self._network_inputs(x_in, t, known, stage)]

  def _network_frequencies(self, x_in, t, known, stage, direct_conv):
    """Choice frequencies int64 [m, D, A] of one batch of rows, exactly.

    x_in: int32 [m, D] network input in data order: x_future where known,
    x_past elsewhere; t: int32 scalar, the step within the stage; known:
    int32 [D]; stage: int32 scalar; direct_conv: Python bool (how the
    network runs its 3x3 convolutions). Exact integer arithmetic only
    (tf_ardm.networks.integer), so every variant agrees to the bit.
    """
    m = tf.shape(x_in)[0]
    stage = tf.fill([m], stage)
    inputs = self._network_inputs(x_in, tf.fill([m], t), tf.tile(known[None], [m, 1]), stage)
    logits = self.integer(*inputs, direct_conv=direct_conv)
    freqs = self.denoiser.choice_frequencies(logits, inputs[0], stage, self.integer.softmax)
    return tf.reshape(freqs, [m, self.num_steps, self.denoiser.num_choices])

  def _step_frequencies(self, x_in, stage, left, right):
    """Choice frequencies int64 [N, right - left, A] of a step's group.

    x_in: int32 [N, D] network input in data order (x_future at the positions
    with sigma_stage < left, x_past elsewhere); the group is the positions
    with left <= sigma_stage < right, in generation order. The rows go
    through the network max_batch at a time; the result of a row does not
    depend on the others (exact arithmetic), so padding is harmless.
    """
    n, d = tf.shape(x_in)[0], self.num_steps
    m = tf.clip_by_value(n, 1, self.max_batch)
    known = tf.cast(self.sigma[stage] < left, tf.int32)
    chunks = tf.maximum((n + m - 1) // m, 1)  # One, all padding, when N = 0.
    x_in = tf.reshape(tf.pad(x_in, [[0, chunks * m - n], [0, 0]]), [chunks, m, d])
    positions = self.order[stage, left:right]
    a = self.denoiser.num_choices

    variant = variants.index(tf.cast(self.use_xla, tf.int32),
                             tf.cast(self.direct_conv, tf.int32))

    def call(x_chunk):
      freqs = tf.switch_case(variant, [
          functools.partial(f, x_chunk, left, known, stage) for f in self.network_functions])
      return tf.gather(freqs, positions, axis=1)

    freqs = tf.map_fn(call, x_in, fn_output_signature=tf.TensorSpec([None, None, a], tf.int64),
                      parallel_iterations=1)
    return tf.reshape(freqs, [chunks * m, right - left, a])[:n]

  def _steps(self, policies, body, state):
    """Runs body(stage, left, right, *state) -> state over the policy steps
    of every stage, stage 0 first; policies: int32 [S, k]."""
    k = tf.shape(policies)[1]
    ext = tf.concat([policies, tf.fill([self.num_stages, 1], self.num_steps)], 1)

    def loop(i, *state):
      stage, j = i // k, i % k
      return (i + 1, *body(stage, ext[stage, j], ext[stage, j + 1], *state))

    return tf.while_loop(lambda i, *_: i < self.num_stages * k, loop, (0, *state),
                         parallel_iterations=1)[1:]

  def _data_crc(self, x, streams):
    """CRC-32 int64 [S] of x int32 [N, D] split into S equal streams."""
    size = _value_bytes(self.num_classes)
    shifts = tf.constant([8 * (size - 1 - i) for i in range(size)], tf.int32)
    data = tf.bitwise.bitwise_and(tf.bitwise.right_shift(x[..., None], shifts), 0xFF)
    return tf.cast(crc.crc32(tf.reshape(tf.cast(data, tf.uint8), [streams, -1])), tf.int64)

  def _check_solid_size(self, n):
    return tf.debugging.Assert(
        n <= self.max_solid,
        [f"a solid stream holds at most {self.max_solid} datapoints of this model; "
         "count:", n])

  def _step_symbols(self, x, stage, left, right):
    """(symbols int32 [N, n], freqs int64 [N, n, A]) of data x int32 [N, D] at
    the step that codes the positions left <= sigma_stage < right."""
    stages = tf.fill([tf.shape(x)[0]], stage)
    x_future, x_past = self.denoiser.stage_inputs(x, stages)
    x_in = tf.where(self.sigma[stage] < left, x_future, x_past)
    freqs = self._step_frequencies(x_in, stage, left, right)
    positions = self.order[stage, left:right]
    symbols = self.denoiser.choice(tf.gather(x_future, positions, axis=1),
                                   tf.gather(x_past, positions, axis=1), stages)
    return symbols, freqs

  def _check_data(self, x):
    return tf.debugging.Assert(tf.reduce_all((x >= 0) & (x < self.num_classes)), [
        f"x must hold values 0 <= x < K = {self.num_classes}; min, max:",
        tf.reduce_min(x), tf.reduce_max(x)])

  def _build(self, budget, count, data_crc, payload, lean):
    """Streams in the full framing, or the lean one where `lean` (bool scalar)."""
    return tf.where(lean, stream.build(self.fingerprint, budget, count, data_crc, payload, True),
                    stream.build(self.fingerprint, budget, count, data_crc, payload))

  def _encode(self, x, budget, solid, lean):
    """x int32 [N, *shape] -> streams string [S]: S = 1 if solid, else N.

    A solid stream codes all N datapoints: at each step, the group of every
    datapoint in turn. Its handle is a single coder over [1, N * n] values.
    lean: the lean framing (tf_ardm.coding.stream), else the full one.
    """
    n = tf.shape(x)[0]
    x = tf.reshape(x, [n, self.num_steps])
    num_streams = tf.where(solid, 1, n)
    checks = [
        self._check_data(x), self._check_solid_size(tf.where(solid, n, 1)),
        # TFC writes a handle's first element even when there is none.
        tf.debugging.Assert(num_streams > 0, ["compress_batch needs at least one datapoint"])]
    with tf.control_dependencies(checks):
      policies = self._stage_policies(budget)
      handle = coding.encoder(num_streams[None])

    def step(stage, left, right, handle):
      symbols, freqs = self._step_symbols(x, stage, left, right)
      return (coding.encode(handle, tf.reshape(symbols, [num_streams, -1]),
                            tf.reshape(freqs, [num_streams, -1, tf.shape(freqs)[-1]])),)

    handle, = self._steps(policies, step, (handle,))
    count = tf.fill([num_streams], tf.cast(tf.where(solid, n, 1), tf.int64))
    return self._build(budget, count, self._data_crc(x, num_streams),
                       coding.finish_encoder(handle), lean)

  def _code_length(self, x, budget):
    """The integer model's code length in bits, float64 [N]: the sum over the
    policy steps of -log2(f[symbol] / sum f) (what an ideal coder would
    spend on the frequencies the streams use)."""
    n = tf.shape(x)[0]
    x = tf.reshape(x, [n, self.num_steps])
    with tf.control_dependencies([self._check_data(x)]):
      policies = self._stage_policies(budget)

    def step(stage, left, right, bits):
      symbols, freqs = self._step_symbols(x, stage, left, right)
      freqs = tf.cast(freqs, tf.float64)
      chosen = tf.gather(freqs, symbols, batch_dims=2)
      total = tf.reduce_sum(freqs, -1)
      return (bits + tf.reduce_sum(tf.math.log(total / chosen), -1) / np.log(2.0),)

    bits, = self._steps(policies, step, (tf.zeros([n], tf.float64),))
    return bits

  def _decode(self, streams, solid, lean):
    """streams string [S] -> x int32 [N, *shape]; S = 1 and N = its count if
    solid, else every stream holds one datapoint and N = S. lean: the streams
    are in the lean framing, else in the full one."""
    num_streams = tf.size(streams)
    with tf.control_dependencies([tf.debugging.Assert(num_streams > 0,
                                                      ["no streams to decode"])]):
      fields = tf.cond(
          lean, lambda: stream.parse(streams, self.fingerprint, self.num_steps, lean=True),
          lambda: stream.parse(streams, self.fingerprint, self.num_steps))
    budget = tf.cast(fields["budget"][0], tf.int32)
    n = tf.cast(tf.where(solid, fields["count"][0], tf.cast(num_streams, tf.int64)),
                tf.int32)
    checks = [
        stream.assert_all(tf.equal(fields["budget"], fields["budget"][0]),
                          "the streams of one batch must share a budget; budget:",
                          fields["budget"]),
        stream.assert_all(solid | tf.equal(fields["count"], 1),
                          "a batch stream must hold one datapoint (use "
                          "decompress_solid); count:", fields["count"]),
        self._check_solid_size(tf.where(solid, fields["count"][0], 1))]
    with tf.control_dependencies(checks):
      policies = self._stage_policies(budget)
      x = tf.fill([n, self.num_steps], self.absorbing)
      decoder, shadow = coding.decoder(fields["payload"]), coding.encoder(num_streams[None])

    def step(stage, left, right, x, decoder, shadow):
      # x holds the stage's x_future where sigma_stage < left, x_past elsewhere.
      freqs = self._step_frequencies(x, stage, left, right)
      freqs = tf.reshape(freqs, [num_streams, -1, tf.shape(freqs)[-1]])
      decoder, symbols = coding.decode(decoder, freqs)
      shadow = coding.encode(shadow, symbols, freqs)
      x_past = tf.gather(x, self.order[stage, left:right], axis=1)
      values = self.denoiser.chosen_value(tf.reshape(symbols, [n, right - left]), x_past,
                                          tf.fill([n], stage))
      # Each group position takes the value of its step; a column of padding
      # keeps the gather valid for an empty group.
      sigma = self.sigma[stage]
      group = masks.current_mask(sigma, left, right) > 0
      values = tf.gather(tf.pad(values, [[0, 0], [0, 1]]), tf.where(group, sigma - left, 0),
                         axis=1)
      return tf.where(group, values, x), decoder, shadow

    x, decoder, shadow = self._steps(policies, step, (x, decoder, shadow))
    data_crc = self._data_crc(x, num_streams)
    rebuilt = self._build(budget, fields["count"], data_crc, coding.finish_encoder(shadow),
                          lean)
    checks = [stream.assert_all(
        tf.equal(data_crc, fields["crc"]),
        "CRC mismatch: the stream is corrupted or was made with another model")]
    with tf.control_dependencies(checks):
      checks.append(stream.assert_all(
          tf.equal(rebuilt, streams) & coding.finish_decoder(decoder),
          "the stream is corrupted (extra, missing or altered bytes)"))
    with tf.control_dependencies(checks):
      return tf.reshape(x, [n, *self.shape])


def fingerprint(codec):
  """4 bytes of SHA-256 over everything that decides the coded data.

  That is the config (with an Upscale model's transition and
  parametrization), the stream format and arithmetic, the coder's precision,
  the orders and policy tables of all stages and every array of the integer
  network (weights, biases, exponents, tables); not the float weights, which
  the coding path never reads.
  """
  digest = hashlib.sha256(json.dumps({
      "format": stream.VERSION, "arithmetic": stream.ARITHMETIC,
      "precision": coding.PRECISION,
      "config": json.loads(codec.config_json.numpy().decode())}, sort_keys=True).encode())
  for value in [codec.sigma.numpy(), codec.budgets.numpy(), codec.policy_table.numpy(),
                *codec.integer.arrays()]:
    digest.update(np.ascontiguousarray(value).tobytes())
  return digest.digest()[:stream.FINGERPRINT_BYTES]


def calibration_data(config, data_dir=None):
  """The calibration datapoints of a model: the first CALIBRATION_SIZE of the
  training split of its dataset, int32 [N, *shape]."""
  return datasets.split(config, "train", data_dir, CALIBRATION_SIZE)


def export(model, export_dir, calibration, max_batch=None):
  """Writes the codec SavedModel of `model` to export_dir, atomically.

  calibration: int32 [N, *shape] datapoints (`calibration_data`). Load it
  with tf_ardm.coding.coder.load, or with tf.saved_model.load after
  importing the range coder ops (range_coder.OPS_PACKAGE:
  tensorflow_compression_ops under TF 2.17, tensorflow_compression under
  TF 2.14).
  """
  return servable.save(Codec(model, calibration, max_batch), export_dir)

