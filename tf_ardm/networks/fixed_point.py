"""Exact fixed-point arithmetic for the codec's integer networks (docs/integer_coding.md).

A fixed-point tensor is an int64 tensor q with a static exponent f (a
Python int): it stands for q * 2^-f. Every operation here has one exact
result on every device, kernel library, XLA version, thread count and batch
layout:

- int64 elementwise arithmetic: adds, multiplies, `tf.math.floordiv` (floor
  division is defined for negative operands), min/max, gathers;
- matmuls and convolutions as float64 matmuls of integer-valued operands
  whose every partial sum stays below 2^52 in magnitude (checked when the
  layer is built), so that any summation order, tiling or FMA use gives the
  same integers; a 3x3 convolution is nine shifted copies (im2col) and one
  matmul, never a conv kernel (those may use Winograd or FFT algorithms);
- nonlinearities and exp as gathers from tables of integers, computed once
  with correctly rounded values (`table`).

Bit widths: activations |q| <= ACT_MAX (16-bit signed), weights |w| <=
WEIGHT_MAX (12-bit signed) with a power-of-two exponent per output channel.
Requantisation is `shift_round`: round half up of q * 2^-s, s >= 0.
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
# Exponent of the inputs of table nonlinearities and of softmax logits:
# resolution 2^-10, range +-32.
TABLE_EXPONENT = 10
# exp(-d 2^-TABLE_EXPONENT) is tabulated times 2^EXP_BITS, so every softmax
# weight is an integer in [0, 2^EXP_BITS]; beyond the table it is 0.
EXP_BITS = 20


class BoundError(ValueError):
  """A layer whose integer sums could exceed SUM_BOUND."""


def check_sum_bound(fan_in, input_max, weight_max, name):
  """Raises BoundError unless fan_in * input_max * weight_max < SUM_BOUND."""
  bound = int(fan_in) * int(input_max) * int(weight_max)
  if bound >= SUM_BOUND:
    raise BoundError(f"{name}: integer sums up to {bound} >= 2^52 (fan-in {fan_in})")


def shift_round(q, s):
  """Round half up of q * 2^-s, int64 like q.

  s: int, or int64 [C] applied along the last axis; a negative s shifts left.
  """
  s = np.asarray(s, np.int64)
  down = tf.constant(np.left_shift(1, np.maximum(s, 0)), tf.int64)
  up = tf.constant(np.left_shift(1, np.maximum(-s, 0)), tf.int64)
  return tf.math.floordiv(q * up + tf.math.floordiv(down, 2), down)


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


def matmul(q, w):
  """Exact integer matmul over the last axis: int64 [..., n] x int64-valued [n, m].

  The caller has checked the sum bound (check_sum_bound).
  """
  a = tf.cast(q, tf.float64)
  shape = tf.shape(a)
  flat = tf.reshape(a, [-1, shape[-1]])
  out = tf.matmul(flat, tf.cast(w, tf.float64))
  return tf.cast(tf.reshape(out, tf.concat([shape[:-1], [tf.shape(out)[-1]]], 0)),
                 tf.int64)


def patches3x3(q):
  """The 3x3 neighbourhoods of int64 [B, H, W, C] -> [B, H, W, 9C], zero padded.

  Channel order (dy, dx, c), matching a Keras kernel [3, 3, C, O] reshaped to
  [9C, O].
  """
  shape = tf.shape(q)
  padded = tf.pad(q, [[0, 0], [1, 1], [1, 1], [0, 0]])
  return tf.concat([padded[:, dy:dy + shape[1], dx:dx + shape[2], :]
                    for dy in range(3) for dx in range(3)], axis=-1)


class Linear:
  """A quantised affine map y = x W + b over the last axis.

  Built from float weights w [n, m] and bias b [m] (or None) for inputs at
  exponent f_in with |q| <= input_max. Per output channel c, W[:, c] =
  round(w[:, c] 2^g_c) with |W| <= WEIGHT_MAX and the bias at exponent
  f_in + g_c. The exact integer sums x W + b (at exponents f_in + g_c) go
  to one output exponent with `requantize`.
  """

  def __init__(self, w, b, f_in, name, input_max=ACT_MAX, f_out=None, limit=ACT_MAX):
    w = np.asarray(w, np.float64)
    self.limit = int(limit)
    self.name, self.f_in = name, int(f_in)
    peak = np.max(np.abs(w), axis=0)
    g = np.where(peak > 0, np.floor(np.log2(WEIGHT_MAX / np.maximum(peak, 1e-300))), 0)
    g = np.minimum(g, 40).astype(np.int64)
    self.g = g
    self.w = np.clip(np.round(w * np.exp2(g)), -WEIGHT_MAX, WEIGHT_MAX).astype(np.int64)
    bias = np.zeros(w.shape[1]) if b is None else np.asarray(b, np.float64)
    self.b = np.round(bias * np.exp2(g + self.f_in)).astype(np.int64)
    check_sum_bound(w.shape[0], input_max, WEIGHT_MAX, name)
    if np.max(np.abs(self.b), initial=0) >= SUM_BOUND // 4:
      raise BoundError(f"{name}: bias too large for exponent {f_in}")
    self.f_out = f_out

  def arrays(self):
    """The integer arrays that define the layer (for the fingerprint)."""
    return [self.w, self.b, self.g, np.array([self.f_in, self.f_out, self.limit], np.int64)]

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


class Normalization:
  """Exact GroupNorm / LayerNorm: (x - mean) / sqrt(var + eps) * gamma + beta.

  Over groups of the last axis (groups=1 with reduce over the last axis
  only: LayerNorm; `spatial` also reduces over axes 1..rank-2: GroupNorm).
  x at exponent f_in; output at exponent f_out (fixed: TABLE_EXPONENT when
  a table nonlinearity follows, else chosen by the caller). The mean is
  rounded to an integer of x's units; the standard deviation carries
  _STD_BITS extra bits; the division rounds half up.
  """

  def __init__(self, gamma, beta, epsilon, groups, spatial, f_in, f_out, name):
    gamma, beta = np.asarray(gamma, np.float64), np.asarray(beta, np.float64)
    self.name, self.groups, self.spatial = name, int(groups), bool(spatial)
    self.f_in, self.f_out = int(f_in), int(f_out)
    peak = max(float(np.max(np.abs(gamma))), 1e-30)
    self.g = int(min(math.floor(math.log2(WEIGHT_MAX / peak)), _STD_BITS + self.f_out))
    self.gamma = np.round(gamma * 2.0**self.g).astype(np.int64)
    self.beta = np.round(beta * 2.0**self.f_out).astype(np.int64)
    self.eps = max(1, int(round(epsilon * 2.0**(2 * (self.f_in + _STD_BITS)))))
    # The variance of values within +-ACT_MAX is below 2^30, so var 2^30 < 2^60.
    if self.eps >= 2**63 - 2**60:
      raise BoundError(f"{name}: epsilon too large at input exponent {self.f_in}")
    # |x - mean| * gamma * 2^shift < 2^17 * 2^11 * 2^shift must stay < 2^62.
    self.shift = _STD_BITS + self.f_out - self.g
    if 17 + WEIGHT_BITS + self.shift >= 62:
      raise BoundError(f"{name}: normalisation shift {self.shift} too large")

  def arrays(self):
    return [self.gamma, self.beta,
            np.array([self.g, self.eps, self.f_in, self.f_out, self.groups], np.int64)]

  def __call__(self, q):
    shape = tf.shape(q)
    channels = q.shape[-1]
    grouped = tf.reshape(q, tf.concat([shape[:-1], [self.groups, channels // self.groups]], 0))
    rank = len(grouped.shape)
    axes = ([*range(1, rank - 2)] if self.spatial else []) + [rank - 1]
    n = tf.cast(tf.reduce_prod(tf.gather(tf.shape(grouped), axes)), tf.int64)
    mean = div_round(tf.reduce_sum(grouped, axes, keepdims=True), n)
    d = grouped - mean
    # var 2^(2 _STD_BITS) in x's units squared, without overflow: the sum of
    # squares is Q n + R with Q < 2^30 (values within +-ACT_MAX) and R < n.
    total = tf.reduce_sum(d * d, axes, keepdims=True)
    quotient, remainder = tf.math.floordiv(total, n), tf.math.floormod(total, n)
    var = quotient * 2**(2 * _STD_BITS) + div_round(remainder * 2**(2 * _STD_BITS), n)
    std = isqrt(var + self.eps)  # >= 1, as eps >= 1.
    d = tf.reshape(d, shape)
    std = tf.repeat(tf.reshape(std, tf.concat([tf.shape(std)[:-2], [self.groups]], 0)),
                    channels // self.groups, axis=-1)
    y = div_round(d * self.gamma * 2**self.shift, std) + self.beta
    return saturate(y)


def softmax_weights(logits, table):
  """exp(l - max l) 2^EXP_BITS, int64 like logits (at TABLE_EXPONENT).

  table: int64 [n], `exp_table()` as a tensor.
  """
  d = tf.reduce_max(logits, -1, keepdims=True) - logits
  return tf.gather(table, tf.minimum(d, tf.cast(tf.shape(table)[0] - 1, tf.int64)))


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
