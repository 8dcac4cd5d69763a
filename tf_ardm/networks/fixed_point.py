"""Exact fixed-point arithmetic for the codec's integer networks (docs/integer_coding.md).

A fixed-point tensor is an int64 tensor q with a static exponent f (a
Python int): it stands for q * 2^-f. Every operation here has one exact
result on every device, kernel library, XLA version, thread count and batch
layout:

- int64 elementwise arithmetic (int32 where the caller has bounded the
  values: attention's logits): adds, multiplies, shifts, `tf.math.floordiv`
  (floor division is defined for negative operands), min/max, gathers,
  reductions;
- matmuls and convolutions in float32 on integer-valued operands
  (activations |a| <= GEMM_INPUT_MAX = 2^8, weights |w| <= GEMM_WEIGHT_MAX =
  2^11 - 1, so that TF32 and float16 hold them exactly too)
  whose every partial sum stays below 2^24 in magnitude (checked when the
  layer is built; a wide reduction is split into chunks whose exact sums
  are added in int64), so that any summation order, tiling or FMA use gives
  the same integers. A 3x3 convolution runs either as a conv2d kernel that
  multiplies and adds the operands (CPU) or as im2col and one matmul (any
  device; GPU conv libraries may pick Winograd or FFT); `conv3x3`.
  Attention's products are float32 matmuls under the same bound
  (`attention_limits`);
- nonlinearities and exp as gathers from tables of integers, computed once
  with correctly rounded values (`table`).

Bit widths: activations |q| <= ACT_MAX (16-bit signed) between layers,
narrowed to |a| <= GEMM_INPUT_MAX (9-bit signed) at a matmul's input;
weights with a power-of-two exponent per output channel, |w| <= 2047 and
small enough for the float32 bound (`gemm_limits`). Requantisation is
`shift_round`: round half up of q * 2^-s, an arithmetic shift.
"""
import decimal
import fractions
import functools
import math

import numpy as np
import tensorflow as tf

ACT_BITS = 16
ACT_MAX = 2**(ACT_BITS - 1) - 1
WEIGHT_BITS = 12
WEIGHT_MAX = 2**(WEIGHT_BITS - 1) - 1
# Partial sums of a float64 matmul stay below this: integers are exact to 2^53.
SUM_BOUND = 2**52
# Partial sums of a float32 matmul stay below this: integers are exact to 2^24.
F32_SUM_BOUND = 2**24
# Matmul inputs are narrowed to |a| <= GEMM_INPUT_MAX (9 bits signed);
# weights get at most GEMM_WEIGHT_MAX (12 bits signed) and at least
# MIN_WEIGHT_MAX levels a side: a wide reduction is split into chunks to
# keep them (gemm_limits). Operands of at most 11 significant bits are also
# exact in TF32 and float16, so a GPU's reduced-precision float32 matmuls
# (TF32 tensor cores) give the same products.
GEMM_INPUT_MAX = 256
GEMM_WEIGHT_MAX = WEIGHT_MAX
MIN_WEIGHT_MAX = 127
# Attention's softmax weights keep at least this many bits in its float32
# weighted sums (attention_limits).
MIN_ATTENTION_BITS = 10
# Exponent of the inputs of table nonlinearities and of softmax logits:
# resolution 2^-10, range +-32.
TABLE_EXPONENT = 10
# Logits may exceed the 16-bit activation range; only their differences
# count, and they saturate here.
LOGIT_LIMIT = 2**40
# exp(-d 2^-TABLE_EXPONENT) is tabulated times 2^EXP_BITS, so every softmax
# weight is an integer in [0, 2^EXP_BITS]; beyond the table it is 0.
EXP_BITS = 20


class BoundError(ValueError):
  """A layer whose integer sums, biases or shifts would leave their exact range."""


def shift_round(q, s):
  """Round half up of q * 2^-s, of q's integer type: floor((q + 2^(s-1)) 2^-s).

  s: int, or int [C] applied along the last axis; a negative s shifts left
  (the caller keeps the result within q's type). The right shift is
  arithmetic (floor division by 2^s, also for q < 0).
  """
  s = np.asarray(s, np.int64)
  right = np.maximum(s, 0)
  if np.any(s < 0):
    q = tf.bitwise.left_shift(q, tf.constant(np.maximum(-s, 0), q.dtype))
  if not np.any(right):
    return q
  half = np.where(right > 0, np.left_shift(1, np.maximum(right - 1, 0)), 0)
  return tf.bitwise.right_shift(q + tf.constant(half, q.dtype), tf.constant(right, q.dtype))


def shift_round_array(q, s):
  """shift_round of a NumPy integer array (int64), for tables built ahead."""
  q = np.asarray(q, np.int64)
  if s <= 0:
    return np.left_shift(q, -s)
  return np.right_shift(q + (1 << (s - 1)), s)


def div_round(num, den):
  """Round half up of num / den for int64 num and den > 0 (broadcasting)."""
  return tf.math.floordiv(2 * num + den, 2 * den)


def saturate(q, limit=ACT_MAX):
  """q clipped to [-limit, limit]."""
  return tf.clip_by_value(q, tf.constant(-limit, tf.int64), tf.constant(limit, tf.int64))


def rescale(q, f, f_out):
  """q at exponent f as int64 at exponent f_out (shift left or round right)."""
  return shift_round(q, f - f_out)


def exponent_for(max_abs, limit=ACT_MAX, headroom=2.0):
  """The largest f with max_abs * headroom * 2^f <= limit (max_abs > 0 float).

  Exact (rational arithmetic corrects the float estimate), so the choice
  never depends on the machine's log2. 0 for max_abs <= 0.
  """
  if not max_abs > 0:
    return 0
  peak = fractions.Fraction(max_abs) * fractions.Fraction(headroom)
  f = int(math.floor(math.log2(limit / (max_abs * headroom))))
  fits = lambda e: peak * fractions.Fraction(2)**e <= limit
  while not fits(f):
    f -= 1
  while fits(f + 1):
    f += 1
  return f


def gemm_limits(fan_in, input_max=GEMM_INPUT_MAX):
  """(weight_max, chunk) of a float32 matmul with fan-in `fan_in`.

  The reduction is split into chunks of `chunk` terms, the fewest that give
  weight_max >= MIN_WEIGHT_MAX with chunk * input_max * weight_max <
  F32_SUM_BOUND; weight_max is then the largest such value, at most
  GEMM_WEIGHT_MAX.
  """
  fan_in, input_max = int(fan_in), int(input_max)
  if not 1 <= input_max <= GEMM_INPUT_MAX:
    raise BoundError(f"matmul input limit {input_max} outside [1, {GEMM_INPUT_MAX}]")
  chunks = 1
  while True:
    chunk = -(-fan_in // chunks)
    weight_max = min(GEMM_WEIGHT_MAX, (F32_SUM_BOUND - 1) // (chunk * input_max))
    if weight_max >= MIN_WEIGHT_MAX:
      return weight_max, chunk
    chunks += 1


def attention_limits(length, value_max=GEMM_INPUT_MAX):
  """(bits, chunk) of attention's float32 weighted sums over `length` keys.

  Softmax weights are rounded to at most 2^bits (from 2^EXP_BITS), values
  are at most value_max, and the keys split into chunks of `chunk`, the
  fewest that keep bits >= MIN_ATTENTION_BITS with chunk * value_max * 2^bits
  < F32_SUM_BOUND; bits is then the most such (at most EXP_BITS).
  """
  length = int(length)
  chunks = 1
  while True:
    chunk = -(-length // chunks)
    bits = min(EXP_BITS, ((F32_SUM_BOUND - 1) // (chunk * int(value_max))).bit_length() - 1)
    if bits >= MIN_ATTENTION_BITS:
      return bits, chunk
    chunks += 1


def attention_input_max(dim):
  """The largest |q|, |k| of attention's float32 logits at head size `dim`:
  dim * limit^2 < F32_SUM_BOUND (836 at dim 24)."""
  return math.isqrt((F32_SUM_BOUND - 1) // int(dim))


def attention_table(bits):
  """exp_table() rounded half up to weights of at most 2^bits, int64."""
  return shift_round_array(exp_table(), EXP_BITS - int(bits))


def attention_logit_dtype(shift, bias_peak=0):
  """tf.int32 where attention's logits provably stay below 2^30 in magnitude
  (so that max - l fits as well; `attention`), else tf.int64.

  The raw products are below 2^24; at TABLE_EXPONENT below 2^(24 - shift)
  + 1 for shift < 0 (below 2^24 otherwise), plus the bias peak.
  """
  peak = (F32_SUM_BOUND << max(-int(shift), 0)) + 1 + int(bias_peak)
  return tf.int32 if peak < 2**30 else tf.int64


def attention_split(length, chunk):
  """(chunks, size) of `attention`'s key split: chunks * size >= length with
  size <= chunk. The fewest chunks that divide `length` exactly (no padding),
  unless that takes more than twice the fewest chunks at all; then those,
  the last one zero padded."""
  fewest = -(-int(length) // int(chunk))
  for chunks in range(fewest, 2 * fewest + 1):
    if length % chunks == 0:
      return chunks, length // chunks
  return fewest, -(-int(length) // fewest)


def attention(q, k, v, shift, table, chunk, bias=None, mean_bits=0, dtype=tf.int64):
  """Exact softmax attention over N keys: int64 [B, N, H, d], the round half
  up of (sum_j w_j v_j / sum_j w_j) 2^mean_bits per query, head and channel.

  q, k: float32 [B, N, H, d], integers with |q|, |k| <= attention_input_max(d);
  v: float32 [B, N, H, d], integers with |v| <= GEMM_INPUT_MAX;
  shift: int, the exponent of the products q.k minus TABLE_EXPONENT: the
  logits l = shift_round(q.k, shift) (+ bias) are at TABLE_EXPONENT;
  table: float32 [n], attention_table(bits) for (bits, chunk) =
  attention_limits(N); w_j = table[min(max l - l_j, n - 1)];
  bias: [H, N, N] of `dtype`, or None;
  dtype: the logits' type, attention_logit_dtype(shift, peak of |bias|)
  (int64 logits saturate at LOGIT_LIMIT before the bias, a no-op within
  int32's bound, so both types give the same result).

  Float32 matmuls on integers whose sums stay below 2^24: the logits, and
  the weighted sums over keys split into chunks of at most `chunk`
  (`attention_split`), run as one batched matmul and added in int64. A ones
  channel after the values gives the chunks' weight totals in it too.
  """
  length, dim = k.shape[1], k.shape[-1]
  logits = shift_round(tf.cast(tf.einsum("bqhd,bkhd->bhqk", q, k), dtype), shift)
  if dtype == tf.int64:
    logits = saturate(logits, LOGIT_LIMIT)
  if bias is not None:
    logits += bias
  w = softmax_weights(logits, table)  # float32 [B, H, N, N]
  values = tf.concat([v, tf.ones_like(v[..., :1])], -1)
  split, size = attention_split(length, chunk)
  if split == 1:
    sums = tf.cast(tf.einsum("bhqk,bkhd->bqhd", w, values), tf.int64)
  else:
    pad = split * size - length  # Zero weights on zero values add nothing.
    if pad:
      w = tf.pad(w, [[0, 0], [0, 0], [0, 0], [0, pad]])
      values = tf.pad(values, [[0, 0], [0, pad], [0, 0], [0, 0]])
    w = tf.reshape(w, tf.concat([tf.shape(w)[:3], [split, size]], 0))
    values = tf.reshape(values, tf.concat([tf.shape(values)[:1],
                                           [split, size, values.shape[2], dim + 1]], 0))
    sums = tf.reduce_sum(tf.cast(tf.einsum("bhqck,bckhd->bhcqd", w, values), tf.int64), 2)
    sums = tf.transpose(sums, [0, 2, 1, 3])
  return div_round(sums[..., :dim] * 2**int(mean_bits), sums[..., dim:])


def matmul(a, w, chunk=None):
  """Exact integer matmul over the last axis, int64 [..., m].

  a: float32 [..., n] and w: float32 [n, m], integer-valued, with every
  partial sum of `chunk` consecutive terms below F32_SUM_BOUND (the caller
  has checked it: gemm_limits); each chunk is one float32 matmul, and the
  chunks' exact sums are added in int64. chunk None: all n terms at once.
  """
  shape = tf.shape(a)
  flat = tf.reshape(a, [-1, shape[-1]])
  n = w.shape[0]
  chunk = n if chunk is None else int(chunk)
  out = None
  for start in range(0, n, chunk):
    part = tf.cast(tf.matmul(flat[:, start:start + chunk], w[start:start + chunk]), tf.int64)
    out = part if out is None else out + part
  return tf.reshape(out, tf.concat([shape[:-1], [tf.shape(out)[-1]]], 0))


def patches3x3(q):
  """The 3x3 neighbourhoods of [B, H, W, C] -> [B, H, W, 9C], zero padded.

  Channel order (dy, dx, c), matching a Keras kernel [3, 3, C, O] reshaped to
  [9C, O]. A copy of the values (one op, so the graph stays small).
  """
  return tf.image.extract_patches(q, [1, 3, 3, 1], [1, 1, 1, 1], [1, 1, 1, 1], "SAME")


def conv3x3(a, w, chunk=None, direct=True):
  """Exact 3x3 'same' convolution, int64 [B, H, W, O].

  a: float32 [B, H, W, C] and w: float32 [9 C, O] (rows in (dy, dx, c)
  order, a Keras kernel [3, 3, C, O] reshaped), integer-valued, with every
  partial sum of `chunk` terms below F32_SUM_BOUND (gemm_limits; None: all
  9 C at once).

  direct: a conv2d kernel over input-channel groups of at most chunk // 9
  channels, whose exact sums are added in int64. Exact with kernels that
  multiply and add the operands themselves (direct and GEMM-based: oneDNN's
  and Eigen's on CPU, with XLA or without); not with transform algorithms
  (Winograd, FFT), which GPU libraries may pick. Else im2col and `matmul`,
  exact on every device.
  """
  c, o = a.shape[-1], w.shape[-1]
  chunk = 9 * c if chunk is None else int(chunk)
  if not direct or chunk < 9:
    return matmul(patches3x3(a), w, chunk)
  kernel = tf.reshape(w, [3, 3, c, o])
  step = chunk // 9
  out = None
  for start in range(0, c, step):
    part = tf.cast(tf.nn.conv2d(a[..., start:start + step], kernel[:, :, start:start + step],
                                1, "SAME"), tf.int64)
    out = part if out is None else out + part
  return out


class Linear:
  """A quantised affine map y = x W + b over the last axis.

  Built from float weights w [n, m] and bias b [m] (or None) for inputs at
  exponent f_in with |a| <= input_max (`narrow` brings activations there).
  Per output channel c, W[:, c] = round(w[:, c] 2^g_c) with |W| <=
  weight_max (gemm_limits) and the bias at exponent f_in + g_c. The exact
  integer sums a W + b (at exponents f_in + g_c, float32 matmuls of `chunk`
  terms) go to one output exponent with `requantize`.
  """

  def __init__(self, w, b, f_in, name, input_max=GEMM_INPUT_MAX, f_out=None, limit=ACT_MAX):
    w = np.asarray(w, np.float64)
    self.limit, self.input_max = int(limit), int(input_max)
    self.name, self.f_in = name, int(f_in)
    self.weight_max, self.chunk = gemm_limits(w.shape[0], self.input_max)
    peak = np.max(np.abs(w), axis=0)
    g = np.where(peak > 0, np.floor(np.log2(self.weight_max / np.maximum(peak, 1e-300))), 0)
    g = np.minimum(g, 40).astype(np.int64)
    self.g = g
    self.w = np.clip(np.round(w * np.exp2(g)), -self.weight_max,
                     self.weight_max).astype(np.int64)
    bias = np.zeros(w.shape[1]) if b is None else np.asarray(b, np.float64)
    self.b = np.round(bias * np.exp2(g + self.f_in)).astype(np.int64)
    if np.max(np.abs(self.b), initial=0) >= SUM_BOUND // 4:
      raise BoundError(f"{name}: bias too large for exponent {f_in}")
    self.f_out = f_out

  def arrays(self):
    """The integer arrays that define the layer (for the fingerprint)."""
    return [self.w, self.b, self.g,
            np.array([self.f_in, self.f_out, self.limit, self.input_max, self.chunk],
                     np.int64)]

  def narrow(self, q, f):
    """Activations int64 q at exponent f (>= f_in) as the float32 matmul
    input: round half up to exponent f_in, saturated at input_max."""
    return tf.cast(saturate(shift_round(q, f - self.f_in), self.input_max), tf.float32)

  def product(self, a, w):
    """The exact sums a w int64 [..., m] of narrowed a [..., n] and the layer's
    weights w (self.w as float32 [n, m])."""
    return matmul(a, w, self.chunk)

  def requantize(self, acc):
    """acc -> int64 at exponent f_out, saturated at `limit`.

    Unless given, f_out is set by the first call, which must be eager (the
    calibration run): the largest exponent that keeps twice the peak
    magnitude within ACT_MAX.
    """
    if self.f_out is None:
      peak = float(np.max(np.abs(acc.numpy()) * np.exp2(-(self.g + self.f_in)), initial=0))
      # A layer silent on the calibration batch keeps its input's exponent.
      self.f_out = exponent_for(peak, self.limit) if peak > 0 else self.f_in
    return saturate(shift_round(acc, self.f_in + self.g - self.f_out), self.limit)


def _decimal_round(value):
  """Round half up of a decimal.Decimal to int."""
  return int((value + decimal.Decimal("0.5")).to_integral_value(rounding=decimal.ROUND_FLOOR))


def _exact_function(name, x):
  """The function `name` at x (a decimal.Decimal), to decimal precision."""
  if name == "exp_neg":
    return (-x).exp()
  if name == "swish":
    return x / (1 + (-x).exp())
  if name == "log1p":
    return (1 + x).ln()
  if name == "gelu_tanh":
    c = decimal.Decimal(2) / decimal.Decimal(math.pi)
    inner = c.sqrt() * (x + decimal.Decimal("0.044715") * x**3)
    # tanh(u) = 1 - 2 / (exp(2u) + 1)
    tanh = 1 - 2 / ((2 * inner).exp() + 1)
    return x * (1 + tanh) / 2
  raise ValueError(f"unknown table function {name!r}")


_NUMPY = {
    "exp_neg": lambda x: np.exp(-x),
    "swish": lambda x: x / (1.0 + np.exp(-x)),
    "log1p": np.log1p,
    "gelu_tanh": lambda x: 0.5 * x * (1.0 + np.tanh(np.sqrt(2.0 / np.pi) * (x + 0.044715 * x**3))),
}


@functools.lru_cache(maxsize=None)
def table(name, f_in, f_out, first, last):
  """int64 [last - first + 1]: round(fn(i 2^-f_in) 2^f_out) for i = first..last.

  The values are the correctly rounded ones on every machine: computed in
  float64, and recomputed with `decimal` (40 digits) wherever the float64
  value lies within 1e-6 of a rounding boundary (float64 libm results may
  differ by an ulp between machines; decimal's exp is correctly rounded).
  """
  i = np.arange(first, last + 1, dtype=np.float64)
  scaled = _NUMPY[name](i * 2.0**-f_in) * 2.0**f_out
  out = np.floor(scaled + 0.5)
  frac = scaled - np.floor(scaled)
  near = np.abs(frac - 0.5) < 1e-6
  if np.any(near):
    with decimal.localcontext() as ctx:
      ctx.prec = 40
      for j in np.nonzero(near)[0]:
        x = decimal.Decimal(int(first + j)) / (decimal.Decimal(2)**f_in)
        out[j] = _decimal_round(_exact_function(name, x) * decimal.Decimal(2)**f_out)
  out = out.astype(np.int64)
  out.setflags(write=False)  # Cached: shared by every caller.
  return out


def exp_table():
  """exp(-d 2^-TABLE_EXPONENT) 2^EXP_BITS for d = 0, 1, ... until it rounds to 0.

  The last entry is 0; look differences up clamped to the last index.
  """
  size = int(math.ceil((EXP_BITS + 1) * math.log(2) * 2**TABLE_EXPONENT)) + 2
  values = table("exp_neg", TABLE_EXPONENT, EXP_BITS, 0, size - 1)
  assert values[-1] == 0, values[-1]
  return values


class Nonlinearity:
  """y = fn(x) by table lookup, for x at exponent f_in with |q| <= ACT_MAX.

  The output exponent is f_in as well (swish and GELU keep the range).
  """

  def __init__(self, name, f_in):
    self.name, self.f_in = name, int(f_in)
    self.values = table(name, self.f_in, self.f_in, -ACT_MAX, ACT_MAX)
    self.f_out = self.f_in

  def arrays(self):
    return [self.values]


def isqrt(v):
  """floor(sqrt(v)) exactly, for int64 v in [0, 2^62)."""
  r = tf.cast(tf.floor(tf.sqrt(tf.cast(v, tf.float64))), tf.int64)
  # float64 sqrt is within a few units of the truth; two corrections each way.
  for _ in range(2):
    r = tf.where(r * r > v, r - 1, r)
    r = tf.where((r + 1) * (r + 1) <= v, r + 1, r)
  return r


# Extra fractional bits of the standard deviation in Normalization.
_STD_BITS = 15
# Bits of the normalised reciprocal of the standard deviation (Normalization).
_RECIPROCAL_BITS = 25


def bit_length(v):
  """floor(log2(v)) exactly, int64 like v, for int64 v in [1, 2^62)."""
  e = tf.cast(tf.floor(tf.math.log(tf.cast(v, tf.float64)) / math.log(2.0)), tf.int64)
  one = tf.ones_like(v)
  # The float estimate is within one of the truth; correct it each way.
  e = tf.where(tf.bitwise.left_shift(one, e) > v, e - 1, e)
  return tf.where(tf.bitwise.left_shift(one, e + 1) <= v, e + 1, e)


class Normalization:
  """Exact GroupNorm / LayerNorm: (x - mean) / sqrt(var + eps) * gamma + beta.

  Over groups of the last axis (groups=1 with reduce over the last axis
  only: LayerNorm; `spatial` also reduces over axes 1..rank-2: GroupNorm).
  x at exponent f_in; output at exponent f_out (fixed: TABLE_EXPONENT when
  a table nonlinearity follows, else chosen by the caller). The mean is
  rounded to an integer of x's units; the standard deviation s carries
  `std_bits` extra bits (_STD_BITS, fewer where epsilon at a fine input
  exponent would not fit: the radicand stays below 2^62). Per group, with
  2^e <= s < 2^(e+1), the reciprocal r = floor(2^(R + e) / s) (R =
  _RECIPROCAL_BITS) has R significant bits, and y = round half up of
  (x - mean) gamma r 2^(shift - R - e), saturated, plus beta: one
  division per group, and int64 sums, products (below 2^52) and shifts.
  """

  def __init__(self, gamma, beta, epsilon, groups, spatial, f_in, f_out, name):
    gamma, beta = np.asarray(gamma, np.float64), np.asarray(beta, np.float64)
    self.name, self.groups, self.spatial = name, int(groups), bool(spatial)
    self.f_in, self.f_out = int(f_in), int(f_out)
    peak = max(float(np.max(np.abs(gamma))), 1e-30)
    # The variance of values within +-ACT_MAX is below 2^30, so var 2^(2 std_bits)
    # < 2^60; with eps the radicand stays below 2^62, s below 2^31 and R + e <= 62.
    self.std_bits = _STD_BITS
    eps = lambda bits: max(1, int(round(epsilon * 2.0**(2 * (self.f_in + bits)))))
    while self.std_bits > 0 and eps(self.std_bits) >= 2**62 - 2**60:
      self.std_bits -= 1
    self.eps = eps(self.std_bits)
    if self.eps >= 2**62 - 2**60:
      raise BoundError(f"{name}: epsilon too large at input exponent {self.f_in}")
    self.g = int(min(math.floor(math.log2(WEIGHT_MAX / peak)), self.std_bits + self.f_out))
    self.gamma = np.round(gamma * 2.0**self.g).astype(np.int64)
    self.beta = np.round(beta * 2.0**self.f_out).astype(np.int64)
    # |x - mean| < 2^16, |gamma| < 2^11 and r <= 2^R: the product is below
    # 2^52; the total right shift R + e - shift must be at least 1 (e >= 0).
    self.shift = self.std_bits + self.f_out - self.g
    if self.shift >= _RECIPROCAL_BITS:
      raise BoundError(f"{name}: normalisation shift {self.shift} too large")

  def arrays(self):
    return [self.gamma, self.beta,
            np.array([self.g, self.eps, self.f_in, self.f_out, self.groups,
                      self.std_bits, _RECIPROCAL_BITS], np.int64)]

  def __call__(self, q):
    channels, rank = q.shape[-1], len(q.shape)
    per_group = channels // self.groups

    def group_sums(v):
      """Sums over each group's elements: int64 [..., C] -> [(B, 1.., ) ..., G]."""
      if self.spatial:
        v = tf.reduce_sum(v, list(range(1, rank - 1)), keepdims=True)
      v = tf.reshape(v, tf.concat([tf.shape(v)[:-1], [self.groups, per_group]], 0))
      return tf.reduce_sum(v, -1)

    def per_channel(v):
      """[..., G] -> [..., C], each group's value on its channels."""
      return tf.repeat(v, per_group, axis=-1)

    # Sums of |q| <= 2^15 and q^2 < 2^30 over a group, in int64.
    sums, squares = group_sums(q), group_sums(q * q)
    n = tf.cast(tf.size(q) // tf.size(sums), tf.int64)
    mean = div_round(sums, n)
    # sum (q - mean)^2 = sum q^2 - 2 mean sum q + n mean^2, in int64: then
    # var 2^(2 std_bits) in x's units squared, without overflow, as Q n + R
    # with Q < 2^30 (values within +-ACT_MAX) and R < n.
    total = squares - 2 * mean * sums + n * mean * mean
    quotient, remainder = tf.math.floordiv(total, n), tf.math.floormod(total, n)
    unit = 2**(2 * self.std_bits)
    var = quotient * unit + div_round(remainder * unit, n)
    std = isqrt(var + self.eps)  # >= 1, as eps >= 1.
    e = bit_length(std)
    reciprocal = tf.math.floordiv(
        tf.bitwise.left_shift(tf.ones_like(std), _RECIPROCAL_BITS + e), std)
    right = _RECIPROCAL_BITS + e - self.shift  # >= 1
    # |q - mean| < 2^16 and gamma r < 2^36: the products are below 2^52;
    # y is their round half up times 2^-right, an arithmetic shift.
    scale = per_channel(reciprocal) * self.gamma
    right = per_channel(right)
    half = tf.bitwise.left_shift(tf.ones_like(right), right - 1)
    y = tf.bitwise.right_shift((q - per_channel(mean)) * scale + half, right)
    return saturate(y + self.beta)


# Block length of prefix_sums' in-block scan.
_SCAN_BLOCK = 16


def prefix_sums(weights):
  """Exclusive prefix sums int32 [..., n + 1] of int32 weights [..., n] >= 0.

  out[..., i] is the sum of weights[..., :i] (out[..., 0] = 0). Exact integer
  adds only: a scan of log2(16) shifted adds within blocks of 16, then the
  blocks' offsets (XLA lowers tf.cumsum to a windowed reduction, n times
  the work). The caller keeps n * max(weights) < 2^31.
  """
  n = weights.shape[-1]
  size = -(-(n + 1) // _SCAN_BLOCK) * _SCAN_BLOCK
  rank = len(weights.shape)
  x = tf.pad(weights, [[0, 0]] * (rank - 1) + [[1, size - n - 1]])
  blocks = tf.reshape(x, tf.concat([tf.shape(x)[:-1], [size // _SCAN_BLOCK, _SCAN_BLOCK]], 0))
  shift = 1
  while shift < _SCAN_BLOCK:
    blocks += tf.pad(blocks[..., :-shift], [[0, 0]] * rank + [[shift, 0]])
    shift *= 2
  offsets = tf.cumsum(blocks[..., -1], axis=-1, exclusive=True)
  sums = tf.reshape(blocks + offsets[..., None], tf.shape(x))
  return sums[..., :n + 1]


def softmax_weights(logits, table):
  """exp(l - max l) 2^EXP_BITS for logits l at TABLE_EXPONENT (int64, or
  int32 where max l - l stays below 2^31), of the table's type.

  table: [n], `exp_table()` as a tensor (or the table with every entry
  rounded alike, which rounds the weights alike; or as float32 where its
  integers are exact there).
  """
  d = tf.reduce_max(logits, -1, keepdims=True) - logits
  return tf.gather(table, tf.minimum(d, tf.cast(tf.shape(table)[0] - 1, logits.dtype)))


def frequencies(weights, real=None):
  """Coding frequencies int64 [..., A] >= 1 from softmax weights [..., A].

  Each real class gets its weight plus floor(total / 2^16) + 1, where total
  is the sum over the real classes: a floor of about 2^-16 of the mass,
  which the coder needs (spec §5.2). real: bool [..., A]; None: all.
  """
  if real is not None:
    weights = tf.where(real, weights, 0)
  total = tf.reduce_sum(weights, -1, keepdims=True)
  freqs = weights + tf.math.floordiv(total, 2**16) + 1
  return freqs if real is None else tf.where(real, freqs, 0)
