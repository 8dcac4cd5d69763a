"""Integer versions of the trained networks, for portable coding (docs/integer_coding.md).

`quantize(network, config, x_in, t, mask)` turns a trained `UNet` or
`Transformer` into an `IntegerNetwork` with the same call, whose result has
one exact value on every machine:

  (x_in int32 [B, *shape], t int32 [B], mask int32 [B, *shape, M],
   direct_conv: Python bool, how 3x3 convolutions run: fixed_point.conv3x3)
      -> logits int64 [B, *shape, K] at exponent TABLE_EXPONENT

(logits = value * 2^10). The calibration inputs (x_in, t, mask) are a batch
like those the codec will see; the first, eager call on them fixes every
activation exponent (fixed_point.Linear). Time embeddings become one table
per ResBlock over all steps, the U-Net's input embedding and dense layer one
table per sub-pixel, softmax scales fold into the query weights.
"""
import hashlib
import math

import numpy as np
import tensorflow as tf

from tf_ardm.networks import fixed_point as fp
from tf_ardm.networks import logistic_mixture as lm
from tf_ardm.networks.transformer import Transformer
from tf_ardm.networks.unet import UNet

LOGIT_LIMIT = fp.LOGIT_LIMIT
# Extra fractional bits of attention's weighted means (before the output layer narrows them).
_MEAN_BITS = 4


class Fixed:
  """A fixed-point tensor: int64 q standing for q 2^-f."""

  def __init__(self, q, f):
    self.q, self.f = q, int(f)


class IntegerNetwork(tf.Module):
  """Common machinery: named ops made on the first (calibration) call."""

  def __init__(self, name=None):
    super().__init__(name=name)
    self._ops = {}
    self._constants = {}
    self.calibrated = False
    # How 3x3 convolutions run in the function being traced (fixed_point.conv3x3).
    self.direct_conv = True

  def op(self, name, make):
    if name not in self._ops:
      if self.calibrated:
        raise RuntimeError(f"integer op {name} was not made during calibration")
      self._ops[name] = make()
    return self._ops[name]

  def constant(self, array, dtype=tf.int64):
    """An integer array as `dtype` (int64, or float32 for matmul weights) in
    the graph, stored once.

    Each distinct array is one non-trainable variable of the smallest
    integer type that holds it (int16, int32 or int64): a SavedModel stores
    it once however many functions use it, and tables are shared.
    """
    array = np.asarray(array, np.int64)
    key = f"{array.shape}:{hashlib.sha256(array.tobytes()).hexdigest()}"
    if key not in self._constants:
      peak = int(np.max(np.abs(array), initial=0))
      stored = tf.int16 if peak < 2**15 else tf.int32 if peak < 2**31 else tf.int64
      self._constants[key] = tf.Variable(array, dtype=stored, trainable=False,
                                         name=f"integer{len(self._constants)}")
    return tf.cast(self._constants[key], dtype)

  def arrays(self):
    """Every integer array that defines the network, in a fixed order."""
    out = []
    for name in sorted(self._ops):
      out += [np.frombuffer(name.encode(), np.uint8), *self._ops[name].arrays()]
    return out

  def softmax(self, logits):
    """fixed_point.softmax_weights with the network's stored exp table."""
    return fp.softmax_weights(logits, self.constant(fp.exp_table()))

  # Layers ------------------------------------------------------------------

  def _gemm_input(self, x, limit=fp.GEMM_INPUT_MAX):
    """The exponent for narrowing x (calibration batch) to |a| <= limit: the
    finest that holds its peak, and no finer than x's own."""
    peak = float(np.max(np.abs(x.q.numpy()), initial=0)) * 2.0**-x.f
    if peak == 0:
      return x.f
    return min(x.f, fp.exponent_for(peak, limit, headroom=1.0))

  def narrow(self, name, x, limit):
    """x as float32 integers |a| <= limit, and their exponent: the finest that
    holds x's calibration peak and no finer than x's own (saturating beyond)."""
    op = self.op(name, lambda: _Exponent(self._gemm_input(x, limit)))
    return tf.cast(fp.saturate(fp.shift_round(x.q, x.f - op.f), limit), tf.float32), op.f

  def dense(self, name, layer, x, f_out=None, limit=fp.ACT_MAX, scale=1.0):
    """A Keras Dense applied over the last axis, its kernel and bias times `scale`."""
    def make():
      bias = None if layer.bias is None else layer.bias.numpy() * scale
      return fp.Linear(layer.kernel.numpy() * scale, bias, self._gemm_input(x), name,
                       f_out=f_out, limit=limit)
    op = self.op(name, make)
    return Fixed(self._linear(op, op.narrow(x.q, x.f)), op.f_out)

  def _linear(self, op, a):
    acc = op.product(a, self.constant(op.w, tf.float32)) + self.constant(op.b)
    return op.requantize(acc)

  def conv3x3(self, name, layer, x, f_out=None, limit=fp.ACT_MAX, kernel=None):
    """A Keras 3x3 'same' Conv2D, exactly: fixed_point.conv3x3 (conv kernels or
    im2col, as `direct_conv` says) on the narrowed input.

    kernel: a function giving the float kernel [3, 3, C, O] to quantise
    (default: the layer's).
    """
    def make():
      k = layer.kernel.numpy() if kernel is None else kernel()
      return fp.Linear(k.reshape([-1, k.shape[-1]]), layer.bias.numpy(),
                       self._gemm_input(x), name, f_out=f_out, limit=limit)
    op = self.op(name, make)
    acc = fp.conv3x3(op.narrow(x.q, x.f), self.constant(op.w, tf.float32), op.chunk,
                     self.direct_conv)
    return Fixed(op.requantize(acc + self.constant(op.b)), op.f_out)

  def norm(self, name, layer, x, spatial, groups, table=None):
    """GroupNorm (spatial) or LayerNorm; then the table nonlinearity `table`."""
    def make():
      gamma, beta = layer.gamma.numpy(), layer.beta.numpy()
      size = x.q.shape[-1] // groups
      if spatial:
        size *= int(np.prod(x.q.shape[1:-1]))
      bound = float(np.max(np.abs(gamma))) * math.sqrt(size) + float(np.max(np.abs(beta)))
      f_out = min(fp.TABLE_EXPONENT, fp.exponent_for(bound, headroom=1.0))
      return fp.Normalization(gamma, beta, layer.epsilon, groups, spatial, x.f, f_out, name)
    op = self.op(name, make)
    y = Fixed(op(x.q), op.f_out)
    return y if table is None else self.nonlinearity(name + "/" + table, table, y)

  def nonlinearity(self, name, function, x):
    op = self.op(name, lambda: fp.Nonlinearity(function, x.f))
    return Fixed(tf.gather(self.constant(op.values), fp.saturate(x.q) + fp.ACT_MAX), x.f)

  def add(self, name, a, b):
    """a + b at the finer exponent that still fits (calibrated)."""
    f = min(a.f, b.f)
    total = fp.rescale(a.q, a.f, f) + fp.rescale(b.q, b.f, f)
    def make():
      peak = float(np.max(np.abs(total.numpy()), initial=0)) * 2.0**-f
      return _Exponent(fp.exponent_for(peak) if peak > 0 else f)
    op = self.op(name, make)
    return Fixed(fp.saturate(fp.rescale(total, f, min(f, op.f))), min(f, op.f))

  def concat(self, parts):
    f = min(p.f for p in parts)
    return Fixed(tf.concat([fp.rescale(p.q, p.f, f) for p in parts], -1), f)

  def attention(self, name, layer, x, bias=None):
    """Multi-head self-attention of a layers.SelfAttention over x [B, N, C]:
    fixed_point.attention on the narrowed queries, keys and values.

    bias: a _Table [H, N, N] added to the logits (at TABLE_EXPONENT), or None.
    """
    heads, dim = layer.num_heads, layer.head_dim
    q = self.dense(name + "/q", layer.q, x, scale=dim**-0.5)
    k = self.dense(name + "/k", layer.k, x)
    v = self.dense(name + "/v", layer.v, x)
    length = x.q.shape[1]
    if length is None:
      raise fp.BoundError(f"{name}: attention needs a static sequence length")
    limit = fp.attention_input_max(dim)
    heads_of = lambda h: tf.reshape(h, tf.concat([tf.shape(h)[:2], [heads, dim]], 0))
    q_a, q_f = self.narrow(name + "/q_narrow", q, limit)
    k_a, k_f = self.narrow(name + "/k_narrow", k, limit)
    v_a, v_f = self.narrow(name + "/v_narrow", v, fp.GEMM_INPUT_MAX)
    shift = q_f + k_f - fp.TABLE_EXPONENT
    bias_peak = 0 if bias is None else int(np.max(np.abs(bias.values), initial=0))
    dtype = fp.attention_logit_dtype(shift, bias_peak)
    bits, chunk = fp.attention_limits(length)
    h = fp.attention(heads_of(q_a), heads_of(k_a), heads_of(v_a), shift,
                     self.constant(fp.attention_table(bits), tf.float32), chunk,
                     None if bias is None else self.constant(bias.values, dtype),
                     _MEAN_BITS, dtype)
    h = Fixed(tf.reshape(h, tf.shape(v.q)), v_f + _MEAN_BITS)
    return self.dense(name + "/out", layer.out, h)


class _Exponent:
  """A calibrated exponent (an op with no weights)."""

  def __init__(self, f):
    self.f = int(f)

  def arrays(self):
    return [np.array([self.f], np.int64)]


class _Table:
  """An integer lookup table made at calibration."""

  def __init__(self, values, f):
    self.values, self.f = np.asarray(values, np.int64), int(f)

  def arrays(self):
    return [self.values, np.array([self.f], np.int64)]


def _quantized_table(values, headroom=2.0):
  """A float table as _Table at the exponent that fits its peak."""
  values = np.asarray(values, np.float64)
  f = fp.exponent_for(float(np.max(np.abs(values), initial=0)), headroom=headroom)
  return _Table(np.round(values * 2.0**f), f)


class IntegerUNet(IntegerNetwork):
  """The integer version of networks.unet.UNet (same structure, spec §7.2)."""

  def __init__(self, net, name=None):
    super().__init__(name=name)
    self.net = net
    self.groups = net.out_norm.groups

  def _temb(self, index, res, t, like):
    """ResBlock `index`'s time projection at t, as int64 at like.f [B, 1, 1, C]."""
    def make():
      steps = tf.range(self.net.time.max_time)
      values = res.temb(tf.nn.swish(self.net.time(steps))).numpy()
      return _Table(np.round(values.astype(np.float64) * 2.0**like.f), like.f)
    op = self.op(f"block{index}/temb", make)
    return Fixed(tf.gather(self.constant(op.values), t)[:, None, None, :], op.f)

  def _res(self, index, res, x, t):
    name = f"block{index}"
    h = self.norm(name + "/norm1", res.norm1, x, True, self.groups, "swish")
    h = self.conv3x3(name + "/conv1", res.conv1, h)
    h = self.add(name + "/temb_add", h, self._temb(index, res, t, h))
    h = self.norm(name + "/norm2", res.norm2, h, True, self.groups, "swish")
    h = self.conv3x3(name + "/conv2", res.conv2, h)
    skip = x if res.shortcut is None else self.dense(name + "/shortcut", res.shortcut, x)
    return self.add(name + "/out", skip, h)

  def _attention_block(self, name, block, x):
    h = self.norm(name + "/norm", block.norm, x, True, self.groups)
    shape = tf.shape(h.q)
    flat = Fixed(tf.reshape(h.q, [shape[0], shape[1] * shape[2], shape[3]]), h.f)
    flat.q.set_shape([None, x.q.shape[1] * x.q.shape[2], x.q.shape[3]])
    a = self.attention(name + "/attention", block.attention, flat)
    return self.add(name + "/out", x, Fixed(tf.reshape(a.q, shape), a.f))

  def _inputs(self, x_in, mask):
    """InputProcessing: a conv over (2x - K_in, mask) and per-sub-pixel embedding tables."""
    layer, k_in = self.net.inputs, self.net.inputs.num_classes_in
    x_in = tf.cast(x_in, tf.int64)
    channels = x_in.shape[-1]

    def kernel():
      k = layer.conv.kernel.numpy().astype(np.float64)
      k[:, :, :channels, :] /= k_in  # The conv sees 2x/K - 1 = (2x - K) / K.
      return k
    u = Fixed(tf.concat([2 * x_in - k_in, tf.cast(mask, tf.int64)], -1), 0)
    h_float = self.conv3x3("inputs/conv", layer.conv, u, kernel=kernel)

    def make():
      emb = layer.embed.embeddings.numpy().astype(np.float64)  # [K_in, 64]
      w = layer.dense.kernel.numpy().astype(np.float64)  # [C * 64, ch/4]
      per_channel = np.stack([emb @ w[c * emb.shape[1]:(c + 1) * emb.shape[1]]
                              for c in range(channels)])  # [C, K_in, ch/4]
      bias = layer.dense.bias.numpy().astype(np.float64)
      bound = float(np.sum(np.max(np.abs(per_channel), axis=(1, 2)))) + float(
          np.max(np.abs(bias)))
      f = fp.exponent_for(bound, headroom=1.0)
      # The bias is folded into channel 0's table.
      per_channel[0] += bias
      return _Table(np.round(per_channel * 2.0**f), f)
    op = self.op("inputs/embed", make)
    table = self.constant(op.values)
    e = tf.add_n([tf.gather(table[c], x_in[..., c]) for c in range(channels)])
    return self.concat([h_float, Fixed(e, op.f)])

  def __call__(self, x_in, t, mask, direct_conv=True):
    net = self.net
    self.direct_conv = bool(direct_conv)
    t = tf.cast(t, tf.int32)
    h = self._inputs(x_in, mask)
    skips = [h]
    index = 0
    for res, att in net.down:
      h = self._res(index, res, h, t)
      index += 1
      if att is not None:
        h = self._attention_block(f"down_attention{index}", att, h)
      skips.append(h)
    h = self._res(index, net.mid[0], h, t)
    h = self._attention_block("mid_attention", net.mid[1], h)
    h = self._res(index + 1, net.mid[2], h, t)
    index += 2
    for res, att in net.up:
      h = self._res(index, res, self.concat([h, skips.pop()]), t)
      index += 1
      if att is not None:
        h = self._attention_block(f"up_attention{index}", att, h)
    h = self.norm("out/norm", net.out_norm, h, True, self.groups, "swish")
    h = self.conv3x3("out/conv", net.out_conv, h, f_out=fp.TABLE_EXPONENT, limit=LOGIT_LIMIT)
    shape = tf.shape(h.q)
    self.calibrated = True
    return tf.reshape(h.q, tf.concat([shape[:3], [net.data_shape[-1],
                                                  net.num_classes_out]], 0))


class IntegerTransformer(IntegerNetwork):
  """The integer version of networks.transformer.Transformer (spec §7.3)."""

  def __init__(self, net, name=None):
    super().__init__(name=name)
    self.net = net

  def __call__(self, x_in, t, mask, direct_conv=True):
    del t, mask, direct_conv  # The absorbing token carries t and the mask; no convs.
    net = self.net

    def make_embed():
      emb = net.embed.embeddings.numpy().astype(np.float64)
      pos = net.positions.numpy().astype(np.float64)
      bound = float(np.max(np.abs(emb))) + float(np.max(np.abs(pos)))
      f = fp.exponent_for(bound, headroom=1.0)
      return _Table(np.round(np.concatenate([emb, pos]) * 2.0**f), f)
    embed = self.op("embed", make_embed)
    table = self.constant(embed.values)
    num_in = net.embed.input_dim
    length = x_in.shape[1]
    h = Fixed(tf.gather(table, tf.cast(x_in[..., 0], tf.int64)) + table[num_in:num_in + length],
              embed.f)
    bias = None
    if net.bias is not None:
      alibi = self.op("alibi", lambda: _Table(
          np.round(net.bias.numpy().astype(np.float64) * 2.0**fp.TABLE_EXPONENT),
          fp.TABLE_EXPONENT))
      bias = alibi
    for i, block in enumerate(net.blocks):
      name = f"block{i}"
      a = self.norm(name + "/norm1", block.norm1, h, False, 1)
      y = self.add(name + "/attention_add", h,
                   self.attention(name + "/attention", block.attention, a, bias))
      z = self.norm(name + "/norm2", block.norm2, y, False, 1)
      z = self.nonlinearity(name + "/gelu", "gelu_tanh",
                            self.dense(name + "/mlp_in", block.mlp_in, z))
      h = self.add(name + "/mlp_add", y, self.dense(name + "/mlp_out", block.mlp_out, z))
    h = self.norm("out/norm", net.norm, h, False, 1)
    logits = self.dense("out/logits", net.logits, h, f_out=fp.TABLE_EXPONENT,
                        limit=LOGIT_LIMIT)
    self.calibrated = True
    return logits.q[:, :, None, :]


# The logistic mixture's integer arithmetic (IntegerLogisticMixture).
_CDF_BITS = fp.EXP_BITS           # CDF values and bin masses at exponent 20.
_EDGE_BITS = 20                   # Bin edges and means at exponent 20.
_INV_SCALE_BITS = 30              # 1/scale at exponent 30.
_Z_BITS = 16                      # Standardised edges at exponent 16 ...
_Z_LIMIT = 16                     # ... clamped to +-16: sigmoid(16) rounds to 1.
_LOG_MANTISSA_BITS = 10           # ilog's mantissa: 2^-10 relative, under 0.001 nats.


class IntegerLogisticMixture(IntegerNetwork):
  """The integer version of logistic_mixture.LogisticMixture around an integer body.

  Call: the body's inputs -> int64 logits [B, *shape, K] at TABLE_EXPONENT:
  the natural log of each class's integer mixture mass (+1), so that the
  codec's softmax (`softmax`, the body's exp table) and everything after it
  treat them as any network's logits. From the body's int64 parameters
  [B, *shape, 3M] at TABLE_EXPONENT (mixture logits, means, log-scales, as
  logistic_mixture.parameters orders, offsets, shifts and clips them):

    1/s = exp(-log s) at 2^-30, from a table over the clipped log-scales;
    z_k = (e_k - mu) / s at 2^-16, clamped to +-16, for the inner edges e_k;
    sigmoid(z) = 2^40 / (2^20 + E(|z|)), rounded, reflected for z < 0, where
      E is the exp table (exp(-d 2^-10) 2^20) interpolated linearly between
      its entries (a relative error near 1e-7);
    mass_k = sum_m w_m (sigmoid(z_{k+1}) - sigmoid(z_k)) 2^-20, with w the
      softmax weights of the mixture logits and sigmoid 0 and 2^20 at the
      outer edges;
    logit_k = ilog(mass_k + 1) at 2^-10: floor(log2) and a 10-bit mantissa
      looked up in a table of ln(1 + j 2^-10).

  Every step is an int64 add, multiply, shift, floor division, clamp or
  gather, so the logits are the same integers on every machine.
  """

  def __init__(self, body, num_classes, num_mixtures, name=None):
    super().__init__(name=name)
    self.body = body
    self.num_classes, self.num_mixtures = int(num_classes), int(num_mixtures)

  def softmax(self, logits):
    return self.body.softmax(logits)

  def _values(self):
    """The head's integer constants, from (M, K) alone."""
    m, k = self.num_mixtures, self.num_classes
    f = fp.TABLE_EXPONENT
    return dict(
        offsets=np.round(lm.offsets(m) * 2.0**_EDGE_BITS).astype(np.int64),
        edges=np.round(lm.edges(k) * 2.0**_EDGE_BITS).astype(np.int64),
        log_m=np.int64(round(math.log(m) * 2**f)),
        ln2=np.int64(round(math.log(2.0) * 2**20)),
        inv_scale=fp.table("exp_neg", f, _INV_SCALE_BITS, int(lm.MIN_LOG_SCALE * 2**f),
                           int(lm.MAX_LOG_SCALE * 2**f)),
        log_table=fp.table("log1p", _LOG_MANTISSA_BITS, 20, 0, 2**_LOG_MANTISSA_BITS - 1))

  def arrays(self):
    values = self._values()
    return [*self.body.arrays(), np.frombuffer(b"logistic_mixture", np.uint8),
            np.array([self.num_classes, self.num_mixtures], np.int64),
            *[np.atleast_1d(values[name]) for name in sorted(values)]]

  @staticmethod
  def _sigmoid(z, exp_table):
    """sigmoid(z 2^-16) 2^20, int64, for int64 z with |z| <= _Z_LIMIT 2^16."""
    fine = _Z_BITS - fp.TABLE_EXPONENT
    d = tf.abs(z)
    i = tf.minimum(tf.bitwise.right_shift(d, fine),
                   tf.cast(tf.shape(exp_table)[0] - 2, tf.int64))
    low, high = tf.gather(exp_table, i), tf.gather(exp_table, i + 1)
    frac = d - tf.bitwise.left_shift(i, fine)  # The last entry is 0: no overshoot.
    e = tf.maximum(low + fp.shift_round((high - low) * frac, fine), 0)
    one = tf.constant(2**_CDF_BITS, tf.int64)
    positive = fp.div_round(tf.constant(2**(2 * _CDF_BITS), tf.int64), one + e)
    return tf.where(z >= 0, positive, one - positive)

  @staticmethod
  def _ilog(v, table, ln2):
    """ln(v) at 2^-TABLE_EXPONENT, int64, for int64 v in [1, 2^40]; table:
    ln(1 + j 2^-10) 2^20 for j < 2^10, ln2: ln 2 at 2^-20."""
    bits = _LOG_MANTISSA_BITS
    b = fp.bit_length(v)
    top = tf.bitwise.left_shift(tf.bitwise.right_shift(v, tf.maximum(b - bits, 0)),
                                tf.maximum(bits - b, 0))
    return fp.shift_round(b * ln2 + tf.gather(table, top - 2**bits),
                          20 - fp.TABLE_EXPONENT)

  def __call__(self, x_in, t, mask, direct_conv=True):
    raw = self.body(x_in, t, mask, direct_conv=direct_conv)  # int64 [B, *shape, 3M]
    m, f = self.num_mixtures, fp.TABLE_EXPONENT
    values = self._values()
    exp_table = self.body.constant(fp.exp_table())  # The body's softmax table.
    weights = self.softmax(raw[..., :m])  # <= 2^20 each
    # Means at 2^-20, where the offsets are (nearly) exact.
    means = tf.bitwise.left_shift(raw[..., m:2 * m], tf.constant(_EDGE_BITS - f, tf.int64))
    mean_limit = int(lm.MEAN_LIMIT * 2**_EDGE_BITS)
    means = tf.clip_by_value(means + self.constant(values["offsets"]), -mean_limit, mean_limit)
    log_scales = tf.clip_by_value(raw[..., 2 * m:] - values["log_m"],
                                  int(lm.MIN_LOG_SCALE * 2**f), int(lm.MAX_LOG_SCALE * 2**f))
    inv_scales = tf.gather(self.constant(values["inv_scale"]),
                           log_scales - int(lm.MIN_LOG_SCALE * 2**f))
    # |edge - mean| <= 3 2^20 times 1/s <= 1097 2^30: below 2^62.
    edges = self.constant(values["edges"])
    zero = tf.zeros_like(raw[..., :1])
    full = zero + 2**_CDF_BITS
    limit = _Z_LIMIT * 2**_Z_BITS
    mass = 0
    for i in range(m):  # Over the M components: [B, *shape, K] at a time.
      z = fp.shift_round((edges - means[..., i:i + 1]) * inv_scales[..., i:i + 1],
                         _EDGE_BITS + _INV_SCALE_BITS - _Z_BITS)
      cdf = self._sigmoid(tf.clip_by_value(z, -limit, limit), exp_table)
      bins = tf.concat([cdf, full], -1) - tf.concat([zero, cdf], -1)
      mass += weights[..., i:i + 1] * bins
    mass = fp.shift_round(mass, _CDF_BITS)
    return self._ilog(mass + 1, self.constant(values["log_table"]), values["ln2"])


def _integer_version(network):
  """The uncalibrated IntegerNetwork of a network (see quantize)."""
  if hasattr(network, "integer_network"):
    return network.integer_network()
  if isinstance(network, lm.LogisticMixture):
    return IntegerLogisticMixture(_integer_version(network.network), network.num_classes,
                                  network.num_mixtures)
  if isinstance(network, UNet):
    return IntegerUNet(network)
  if isinstance(network, Transformer):
    return IntegerTransformer(network)
  raise TypeError(f"no integer version of {type(network).__name__}")


def quantize(network, x_in, t, mask):
  """The IntegerNetwork of a trained UNet or Transformer, calibrated on one eager batch.

  x_in int32 [B, *shape], t int32 [B], mask int32 [B, *shape, M]: inputs
  like the codec's (known values and masks at a spread of steps).
  Any other network may provide its own: a method `integer_network()`
  returning an IntegerNetwork (the tests' fixed-logit networks do). A
  LogisticMixture's is an IntegerLogisticMixture around its body's.
  """
  integer = _integer_version(network)
  integer(tf.constant(x_in), tf.constant(t), tf.constant(mask))
  return integer
