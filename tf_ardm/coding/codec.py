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
  encode(x [N, *shape], budget, solid bool) / decode(streams [S], solid): the
      two functions that all of the above call
  codec_info() -> fingerprint string (4 bytes), micro_batch, max_solid
The functions raise InvalidArgumentError with a one-line reason for invalid
input (before any network call) and for invalid streams. Signatures with
these names exist as well (outputs named output_0 where there is one).

Encoding follows the stages s = 0..S-1 in generation order (coarse to
fine; S = 1 for OA) and, within stage s, its fixed order sigma_s and its
DP-optimal policy for the budget (`Servable._stage_policies`): one
tf.while_loop over the S*k policy steps makes one network call per
micro-batch and codes the step's group of positions (the same group for every
datapoint, as sigma_s is shared) with one range coder op per bit level
(`tf_ardm.coding.range_coder`). A position's symbol is its choice among the A values the
stage can give it (the denoiser's `choice`: OA, the K classes; Upscale, the
values that downscale to x_past, see `tf_ardm.models.upscale.StageSpace`), coded with
the stage distribution restricted to them (`choice_probs`), so the stream
comes within a fraction of a percent of the exact code length
-log2 p(x | sigma, policies) (`Coder.exact_bits`). TFC's coder is first-in
first-out, so the encoder codes in decoding order. The decoder mirrors the
loop, re-encodes what it decodes, and fails unless the data CRC matches and
the re-encoded stream equals its input byte for byte, so a corrupted,
truncated, extended or foreign stream raises InvalidArgumentError and never
yields wrong data.

Determinism: the coder needs bit-identical probabilities on both sides. The
network and the choice probabilities (its softmax, and an Upscale stage's
distribution) run as one XLA-compiled function (`network_probs`) on
micro-batches of exactly `micro_batch` datapoints (the last one padded), so
the floats never depend on how many datapoints a caller codes together, nor
on TF's oneDNN kernels, which gave different results (and crashed) inside
these loops under CPU load in TF 2.14. Everything after it is exact IEEE
arithmetic. Tests check batch against single, other batch sizes and a fresh
process; benchmarks/codec_determinism.py checks encoders
and decoders running concurrently. The fingerprint (SHA-256 of the EMA
weights, config, orders, policy tables and coding settings) ties streams to
one model; decoding needs the same TF build and CPU/GPU kind as encoding,
which the CRC enforces.

`Coder` is the numpy-facing API over a Codec or its loaded export (errors
become `UserError`); `export` writes the codec SavedModel, `load` opens an
export or a trained model directory.
"""
import hashlib
import json
import os

import numpy as np
import tensorflow as tf

from tf_ardm import errors
from tf_ardm.coding import crc
from tf_ardm.coding import range_coder as coding
from tf_ardm.coding import stream
from tf_ardm.data import validation
from tf_ardm.errors import UserError
from tf_ardm.generation import distributions
from tf_ardm.generation import masks
from tf_ardm.models import checkpoints
from tf_ardm.serving import servable

DEFAULT_MICRO_BATCH = 16
# Bounds the floats a step holds: probabilities and tree levels of all datapoints.
_MAX_STEP_VALUES = 2**27


def _value_bytes(num_classes):
  """Bytes per value in the data CRC: 1, 2 or 4."""
  return 1 if num_classes <= 2**8 else 2 if num_classes <= 2**16 else 4


class Codec(servable.Servable):
  """The servable functions plus lossless compress/decompress (see module doc)."""

  def __init__(self, model, micro_batch=DEFAULT_MICRO_BATCH):
    if micro_batch != 1 and micro_batch % 16:
      raise UserError(f"the micro-batch must be 1 or a multiple of 16, got {micro_batch}")
    super().__init__(model)
    config = model.config
    self.shape, self.micro_batch = list(config.shape), int(micro_batch)
    self.absorbing = config.absorbing
    d, a = self.num_steps, self.denoiser.num_choices
    self.max_solid = max(1, _MAX_STEP_VALUES // (d * (a + 2**coding.num_bits(a))))
    # Per stage, the position generated at each step: int32 [S, D].
    self.order = tf.constant(np.argsort(self.sigma.numpy(), axis=1).astype(np.int32))
    self.fingerprint = fingerprint(self, micro_batch)
    self.network_probs = tf.function(self._network_probs, jit_compile=True, input_signature=[
        tf.TensorSpec([micro_batch, d], tf.int32), tf.TensorSpec([], tf.int32),
        tf.TensorSpec([d], tf.int32), tf.TensorSpec([], tf.int32)])
    x_spec = tf.TensorSpec(self.shape, tf.int32, name="x")
    batch_spec = tf.TensorSpec([None, *self.shape], tf.int32, name="x")
    budget_spec = tf.TensorSpec([], tf.int32, name="budget")
    stream_spec = tf.TensorSpec([], tf.string, name="stream")
    streams_spec = tf.TensorSpec([None], tf.string, name="streams")
    solid_spec = tf.TensorSpec([], tf.bool, name="solid")
    self.encode = tf.function(self._encode, input_signature=[
        batch_spec, budget_spec, solid_spec])
    self.decode = tf.function(self._decode, input_signature=[streams_spec, solid_spec])
    # The public functions call `encode` and `decode`, which they then share.
    self.compress = tf.function(lambda x, budget: self.encode(x[None], budget, False)[0],
                                input_signature=[x_spec, budget_spec])
    self.decompress = tf.function(lambda s: self.decode(s[None], False)[0],
                                  input_signature=[stream_spec])
    self.compress_batch = tf.function(lambda x, budget: self.encode(x, budget, False),
                                      input_signature=[batch_spec, budget_spec])
    self.decompress_batch = tf.function(lambda streams: self.decode(streams, False),
                                        input_signature=[streams_spec])
    self.compress_solid = tf.function(lambda x, budget: self.encode(x, budget, True)[0],
                                      input_signature=[batch_spec, budget_spec])
    self.decompress_solid = tf.function(lambda s: self.decode(s[None], True),
                                        input_signature=[stream_spec])
    self.codec_info = tf.function(lambda: {
        "fingerprint": tf.constant(self.fingerprint),
        "micro_batch": tf.constant(self.micro_batch),
        "max_solid": tf.constant(self.max_solid)}, input_signature=[])

  def signatures(self):
    return {**super().signatures(), "compress": self.compress,
            "decompress": self.decompress, "compress_batch": self.compress_batch,
            "decompress_batch": self.decompress_batch,
            "compress_solid": self.compress_solid,
            "decompress_solid": self.decompress_solid, "codec_info": self.codec_info}

  def _network_probs(self, x_in, t, known, stage):
    """Choice probabilities float32 [m, D, A] of one micro-batch, under XLA.

    x_in: int32 [m, D] network input in data order: x_future where known,
    x_past elsewhere; t: int32 scalar, the step within the stage; known:
    int32 [D]; stage: int32 scalar. Compiled once per model (all shapes are
    static).
    """
    m = self.micro_batch
    x_in = tf.reshape(x_in, [m, *self.shape])
    stage = tf.fill([m], stage)
    logits = self.denoiser.logits(x_in, tf.fill([m], t), tf.tile(known[None], [m, 1]), stage)
    probs = self.denoiser.choice_probs(logits, x_in, stage)
    return tf.reshape(probs, [m, self.num_steps, self.denoiser.num_choices])

  def _step_probs(self, x_in, stage, left, right):
    """Choice probabilities float32 [N, right - left, A] of a step's group.

    x_in: int32 [N, D] network input in data order (x_future at the positions
    with sigma_stage < left, x_past elsewhere); the group is the positions
    with left <= sigma_stage < right, in generation order. The network runs
    under XLA on micro-batches, one after the other: XLA's CPU kernels give
    the same floats on every run, whereas TF 2.14's oneDNN kernels gave
    different results (and crashed) inside these loops under CPU load.
    """
    n, d, m = tf.shape(x_in)[0], self.num_steps, self.micro_batch
    known = tf.cast(self.sigma[stage] < left, tf.int32)
    chunks = tf.maximum((n + m - 1) // m, 1)  # One, all padding, when N = 0.
    x_in = tf.reshape(tf.pad(x_in, [[0, chunks * m - n], [0, 0]]), [chunks, m, d])
    positions = self.order[stage, left:right]
    a = self.denoiser.num_choices
    probs = tf.map_fn(
        lambda x_chunk: tf.gather(self.network_probs(x_chunk, left, known, stage),
                                  positions, axis=1),
        x_in, fn_output_signature=tf.TensorSpec([m, None, a], tf.float32),
        parallel_iterations=1)
    return tf.reshape(probs, [chunks * m, right - left, a])[:n]

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

  def _encode(self, x, budget, solid):
    """x int32 [N, *shape] -> streams string [S]: S = 1 if solid, else N.

    A solid stream codes all N datapoints: at each step, the group of every
    datapoint in turn. Its handle is a single coder over [1, N * n] values.
    """
    n = tf.shape(x)[0]
    x = tf.reshape(x, [n, self.num_steps])
    num_streams = tf.where(solid, 1, n)
    checks = [
        tf.debugging.Assert(tf.reduce_all((x >= 0) & (x < self.num_classes)), [
            f"x must hold values 0 <= x < K = {self.num_classes}; min, max:",
            tf.reduce_min(x), tf.reduce_max(x)]),
        self._check_solid_size(tf.where(solid, n, 1)),
        # TFC writes a handle's first element even when there is none.
        tf.debugging.Assert(num_streams > 0, ["compress_batch needs at least one datapoint"])]
    with tf.control_dependencies(checks):
      policies = self._stage_policies(budget)
      handle = coding.encoder(num_streams[None])

    def step(stage, left, right, handle):
      stages = tf.fill([n], stage)
      x_future, x_past = self.denoiser.stage_inputs(x, stages)
      x_in = tf.where(self.sigma[stage] < left, x_future, x_past)
      probs = self._step_probs(x_in, stage, left, right)
      positions = self.order[stage, left:right]
      symbols = self.denoiser.choice(tf.gather(x_future, positions, axis=1),
                                     tf.gather(x_past, positions, axis=1), stages)
      return (coding.encode(handle, tf.reshape(symbols, [num_streams, -1]),
                            tf.reshape(probs, [num_streams, -1, tf.shape(probs)[-1]])),)

    handle, = self._steps(policies, step, (handle,))
    count = tf.fill([num_streams], tf.cast(tf.where(solid, n, 1), tf.int64))
    return stream.build(self.fingerprint, budget, count, self._data_crc(x, num_streams),
                        coding.finish_encoder(handle))

  def _decode(self, streams, solid):
    """streams string [S] -> x int32 [N, *shape]; S = 1 and N = its count if
    solid, else every stream holds one datapoint and N = S."""
    num_streams = tf.size(streams)
    with tf.control_dependencies([tf.debugging.Assert(num_streams > 0,
                                                      ["no streams to decode"])]):
      fields = stream.parse(streams, self.fingerprint, self.num_steps)
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
      probs = self._step_probs(x, stage, left, right)
      probs = tf.reshape(probs, [num_streams, -1, tf.shape(probs)[-1]])
      decoder, symbols = coding.decode(decoder, probs)
      shadow = coding.encode(shadow, symbols, probs)
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
    rebuilt = stream.build(self.fingerprint, budget, fields["count"], data_crc,
                           coding.finish_encoder(shadow))
    checks = [stream.assert_all(
        tf.equal(data_crc, fields["crc"]),
        "CRC mismatch: the stream is corrupted, or was made with another model "
        "or on hardware whose arithmetic differs")]
    with tf.control_dependencies(checks):
      checks.append(stream.assert_all(
          tf.equal(rebuilt, streams) & coding.finish_decoder(decoder),
          "the stream is corrupted (extra, missing or altered bytes)"))
    with tf.control_dependencies(checks):
      return tf.reshape(x, [n, *self.shape])


def fingerprint(codec, micro_batch):
  """4 bytes of SHA-256 over everything that decides the decoded data.

  That is the config (with an Upscale model's transition and
  parametrization), the coding settings, the orders and policy tables of all
  stages and the EMA weights.
  """
  digest = hashlib.sha256(json.dumps({
      "format": stream.VERSION, "precision": coding.PRECISION,
      "epsilon": distributions.EPSILON, "micro_batch": int(micro_batch), "network": "xla",
      "config": json.loads(codec.config_json.numpy().decode())}, sort_keys=True).encode())
  for value in [codec.sigma, codec.budgets, codec.policy_table,
                *codec.denoiser.network.weights]:
    digest.update(np.ascontiguousarray(value.numpy()).tobytes())
  return digest.digest()[:stream.FINGERPRINT_BYTES]


def export(model, export_dir, micro_batch=DEFAULT_MICRO_BATCH):
  """Writes the codec SavedModel of `model` to export_dir, atomically.

  Load it with `load`, or with tf.saved_model.load after
  `import tensorflow_compression` (which registers the range coder ops).
  """
  return servable.save(Codec(model, micro_batch), export_dir)


def load(path, micro_batch=DEFAULT_MICRO_BATCH):
  """A `Coder` for a codec export or a trained model directory.

  path: a codec SavedModel, an export root holding one in `codec/`
  (tf_ardm.cli.exports), or a trained model directory (<workdir>/model), from
  which the codec is built in memory with `micro_batch`; an export brings
  its own.
  """
  if os.path.isfile(os.path.join(path, "codec", "saved_model.pb")):
    path = os.path.join(path, "codec")
  if os.path.isfile(os.path.join(path, "saved_model.pb")):
    module, config = servable.load(path)
    if not hasattr(module, "decompress_solid"):
      raise UserError(f"{path} is a SavedModel without the codec functions; pass "
                      "a codec export (tf_ardm.coding.codec.export) or the trained model "
                      "directory (<workdir>/model)")
    return Coder(module, config)
  if checkpoints.is_model_dir(path):
    model = checkpoints.restore(path)
    return Coder(Codec(model, micro_batch), model.config)
  raise UserError(f"{path} is neither a codec export (saved_model.pb, or codec/ of an "
                  f"export root) nor a trained model directory ({checkpoints.CONFIG})")


class Coder:
  """Numpy data and bytes over a Codec or its loaded export.

  Data are integer arrays [N, *shape] with values in [0, K); a budget is the
  network calls per datapoint and stage, in [1, D]. Invalid input and
  invalid streams raise UserError, before any network call for input.
  `calls` counts the network calls made (micro-batches times budget times
  the number of stages S).
  """

  def __init__(self, module, config):
    self.module, self.config = module, config
    self.shape, self.num_steps = tuple(config.shape), config.num_steps
    self.num_stages = config.num_stages
    info = module.codec_info()
    self.fingerprint = info["fingerprint"].numpy()
    self.micro_batch = int(info["micro_batch"])
    self.max_solid = int(info["max_solid"])
    self.calls = 0  # Network calls made by compress* and decompress*.

  def check_data(self, x):
    """x as int32 [N, *shape]; UserError for a wrong shape, type or range."""
    return validation.check_datapoints(x, self.shape, self.config.num_classes)

  def check_budget(self, budget):
    """budget as int; UserError unless 1 <= budget <= D."""
    if not 1 <= int(budget) <= self.num_steps:
      raise UserError(f"the budget must lie in [1, D = {self.num_steps}], got {budget}")
    return int(budget)

  def _run(self, fn, *args, names=None):
    try:
      return fn(*args)
    except tf.errors.InvalidArgumentError as e:
      raise errors.from_tf_error(e, names) from None

  def _code(self, fn, n, budget, *args, names=None):
    """Runs a coding function on n datapoints, counting its network calls."""
    out = self._run(fn, *args, names=names).numpy()
    self.calls += self.num_stages * budget * -(-n // self.micro_batch)
    return out

  def parts(self, n):
    """Slices of n datapoints, one per call or solid stream: at most
    max_solid datapoints each, whole micro-batches where possible."""
    size = self.max_solid
    if size >= self.micro_batch:
      size -= size % self.micro_batch
    return [slice(i, i + size) for i in range(0, n, size)]

  def compress(self, x, budget):
    """One solid stream (bytes) for x [N, *shape], N <= max_solid."""
    x, budget = self.check_data(x), self.check_budget(budget)
    if len(x) > self.max_solid:
      raise UserError(f"a solid stream holds at most {self.max_solid} datapoints, "
                      f"got {len(x)}")
    return self._code(self.module.compress_solid, len(x), budget, x, budget)

  def decompress(self, data):
    """The data int32 [N, *shape] of one solid (or single) stream."""
    header = stream.read_header(data, self.fingerprint)
    return self._code(self.module.decompress_solid, header.count, header.budget,
                      tf.constant(data, tf.string), names=[None])

  def compress_each(self, x, budget):
    """One stream (bytes) per datapoint of x [N, *shape]."""
    x, budget = self.check_data(x), self.check_budget(budget)
    out = []
    for part in self.parts(len(x)):
      out += list(self._code(self.module.compress_batch, len(x[part]), budget,
                             x[part], budget))
    return out

  def decompress_each(self, streams, names=None):
    """x int32 [N, *shape] from single-datapoint streams (any budgets).

    names[i] names stream i in error messages (default 'stream i').
    """
    names = names or [f"stream {i}" for i in range(len(streams))]
    x = np.zeros([len(streams), *self.shape], np.int32)
    groups = {}
    for i, data in enumerate(streams):
      try:
        header = stream.read_header(data, self.fingerprint)
      except UserError as e:
        raise UserError(f"{names[i]}: {e}") from None
      groups.setdefault(header.budget, []).append(i)
    for budget, ids in groups.items():
      for part in self.parts(len(ids)):
        batch = ids[part]
        x[batch] = self._code(self.module.decompress_batch, len(batch), budget,
                              tf.constant([streams[i] for i in batch], tf.string),
                              names=[names[i] for i in batch])
    return x

  def exact_bits(self, x, budget):
    """The model's exact code length in bits, float64 [N], for the same
    orders and policies: -log2 p(x | sigma, policy(budget)), summed over the
    stages of an Upscale model (the servable's log_prob times D)."""
    x, budget = self.check_data(x), self.check_budget(budget)
    bits = [self._run(self.module.log_prob, x[part], budget)["bits_per_dim"].numpy()
            for part in self.parts(len(x))]
    return np.concatenate(bits or [np.zeros([0])]).astype(np.float64) * self.num_steps
