"""fixed_point: each primitive against an independent reference in Python integers.

The references here use Python's unbounded ints, `fractions.Fraction` and
`decimal` (never the module's own helpers), so that a wrong rounding rule,
an overflow or a lossy float path shows up as a mismatch.
"""
import decimal
import math
from fractions import Fraction

import numpy as np
import pytest
import tensorflow as tf

from tf_ardm.coding import range_coder
from tf_ardm.networks import fixed_point as fp


def _round_half_up(value):
  """floor(value + 1/2) of a Fraction (or int), as a Python int."""
  return math.floor(Fraction(value) + Fraction(1, 2))


def _ints(array):
  """A NumPy array as nested Python ints (for big-int references)."""
  return np.asarray(array).astype(object)


def _np(tensor):
  return np.asarray(tensor)


# ------------------------------------------------ shift_round, div_round ---


def test_shift_round_rounds_half_up_for_either_sign():
  # q * 2^-s exactly halfway: always towards +infinity.
  q = tf.constant([3, -3, 1, -1, 5, -5, 6, -6, 0, 7, -7], tf.int64)
  np.testing.assert_array_equal(_np(fp.shift_round(q, 1)), [2, -1, 1, 0, 3, -2, 3, -3, 0, 4, -3])
  # 2^(s-1) (2k + 1) at s = 4: +-8, +-24 are halves; +-7, +-9 are not.
  q = tf.constant([8, -8, 24, -24, 7, -7, 9, -9], tf.int64)
  np.testing.assert_array_equal(_np(fp.shift_round(q, 4)), [1, 0, 2, -1, 0, 0, 1, -1])
  # s = 0 is the identity; a negative s shifts left.
  np.testing.assert_array_equal(_np(fp.shift_round(q, 0)), _np(q))
  np.testing.assert_array_equal(_np(fp.shift_round(q, -3)), _np(q) * 8)


def test_shift_round_random_scalar_shifts_against_fractions():
  rng = np.random.default_rng(0)
  for s in [0, 1, 2, 5, 11, 20, 31, 40, -1, -7, -20]:
    bound = 2**60 if s >= 0 else 2**(60 + s)
    q = rng.integers(-bound, bound, 500, dtype=np.int64)
    q[:4] = [bound - 1, -bound, 0, -1]
    got = _np(fp.shift_round(tf.constant(q), s))
    expected = [_round_half_up(Fraction(int(v), 2**s)) if s >= 0 else int(v) << -s for v in q]
    assert got.dtype == np.int64
    assert got.tolist() == expected, s


def test_shift_round_per_channel_shift_vector_with_left_shifts():
  rng = np.random.default_rng(1)
  s = np.array([0, 1, 3, 12, 30, -1, -5, 17], np.int64)
  q = rng.integers(-2**40, 2**40, (3, 64, len(s)), dtype=np.int64)
  q[0, 0] = 2**np.maximum(s - 1, 0) * np.where(s > 0, -1, 1)  # Exact halves, negative.
  got = _np(fp.shift_round(tf.constant(q), s))
  expected = np.empty(q.shape, object)
  for index in np.ndindex(q.shape):
    c = index[-1]
    expected[index] = _round_half_up(Fraction(int(q[index])) * Fraction(2)**int(-s[c]))
  assert got.tolist() == expected.tolist()
  # The same through XLA.
  jit = tf.function(lambda v: fp.shift_round(v, s), jit_compile=True)
  assert _np(jit(tf.constant(q))).tolist() == expected.tolist()


def test_div_round_half_up_and_broadcasting():
  num = tf.constant([3, -3, 5, -5, 1, -1, 0, 4, -4], tf.int64)
  np.testing.assert_array_equal(_np(fp.div_round(num, tf.constant(2, tf.int64))),
                                [2, -1, 3, -2, 1, 0, 0, 2, -2])
  rng = np.random.default_rng(2)
  num = rng.integers(-2**50, 2**50, (200, 5), dtype=np.int64)
  den = np.array([1, 2, 3, 1000003, 2**40 + 7], np.int64)
  num[:5] = den * 7 + den // 2  # Halves (for even den) and near-halves.
  num[5:10] = -(den * 7 + den // 2)
  got = _np(fp.div_round(tf.constant(num), tf.constant(den)))
  expected = [[_round_half_up(Fraction(int(a), int(b))) for a, b in zip(row, den)] for row in num]
  assert got.tolist() == expected


def test_saturate_and_rescale():
  q = tf.constant([-2**40, -fp.ACT_MAX - 1, -fp.ACT_MAX, -5, 0, 5, fp.ACT_MAX, fp.ACT_MAX + 1,
                   2**40], tf.int64)
  np.testing.assert_array_equal(
      _np(fp.saturate(q)),
      [-fp.ACT_MAX, -fp.ACT_MAX, -fp.ACT_MAX, -5, 0, 5, fp.ACT_MAX, fp.ACT_MAX, fp.ACT_MAX])
  np.testing.assert_array_equal(_np(fp.saturate(q, 4)), [-4, -4, -4, -4, 0, 4, 4, 4, 4])
  rng = np.random.default_rng(3)
  q = rng.integers(-2**30, 2**30, 300, dtype=np.int64)
  for f, f_out in [(10, 3), (3, 10), (7, 7), (0, -4), (-2, 5)]:
    # q 2^-f expressed at f_out: round half up of q 2^(f_out - f).
    got = _np(fp.rescale(tf.constant(q), f, f_out)).tolist()
    assert got == [_round_half_up(Fraction(int(v)) * Fraction(2)**(f_out - f)) for v in q]


# ---------------------------------------------------------- exponent_for ---


def _exponent_ok(f, max_abs, limit, headroom):
  v = Fraction(max_abs) * Fraction(headroom)
  return v * Fraction(2)**f <= limit < v * Fraction(2)**(f + 1)


def test_exponent_for_is_the_largest_fitting_exponent():
  rng = np.random.default_rng(4)
  for max_abs in np.exp(rng.uniform(-30, 30, 2000)):
    for limit, headroom in [(fp.ACT_MAX, 2.0), (fp.ACT_MAX, 1.0), (2**40, 2.0)]:
      f = fp.exponent_for(float(max_abs), limit, headroom)
      assert _exponent_ok(f, float(max_abs), limit, headroom), (max_abs, limit, headroom, f)
  # Exact powers of two on the boundary.
  assert fp.exponent_for(fp.ACT_MAX / 16) == 3
  assert fp.exponent_for(fp.ACT_MAX / 2**-5, headroom=1.0) == -5
  assert fp.exponent_for(0.0) == fp.exponent_for(-1.0) == fp.exponent_for(float("nan")) == 0


def test_exponent_for_one_ulp_above_a_boundary():
  # 125 * 2^3 = 1000 fits; 125.00000000000001 * 2^3 does not: f must be 2.
  max_abs = float(np.nextafter(125.0, np.inf))
  assert fp.exponent_for(max_abs, 1000, 1.0) == 2


# ---------------------------------------------------------------- isqrt ---


def test_isqrt_exact_for_random_and_edge_values():
  rng = np.random.default_rng(5)
  top = 2**62 - 1
  roots = np.concatenate([rng.integers(0, 2**31, 3000), [0, 1, 2, 3, 2**26, 2**26 + 1,
                                                          2**31 - 2, 2**31 - 1]])
  squares = roots.astype(object)**2
  values = [int(v) for v in squares]
  values += [int(v) - 1 for v in squares if v > 0] + [int(v) + 1 for v in squares]
  values += [int(v) for v in rng.integers(0, 2**62, 5000, dtype=np.int64)]
  values += [int(v) for v in np.exp2(rng.uniform(0, 62, 5000)).astype(np.int64) if v <= top]
  values += list(range(0, 100)) + [top, top - 1, 2**62 - 2**32, 2**53, 2**53 + 1, 2**53 - 1]
  values = [v for v in values if 0 <= v <= top]
  v = tf.constant(np.array(values, np.int64))
  expected = [math.isqrt(x) for x in values]
  assert _np(fp.isqrt(v)).tolist() == expected
  assert _np(tf.function(fp.isqrt, jit_compile=True)(v)).tolist() == expected


# ---------------------------------------------- matmul, patches3x3, bound ---


def _conv3x3_reference(q, k):
  """NumPy int64 'same' 3x3 cross-correlation: q [B, H, W, C], k [3, 3, C, O]."""
  b, h, w, _ = q.shape
  padded = np.pad(q, [(0, 0), (1, 1), (1, 1), (0, 0)])
  out = np.zeros([b, h, w, k.shape[-1]], np.int64)
  for dy in range(3):
    for dx in range(3):
      out += np.einsum("bhwc,co->bhwo", padded[:, dy:dy + h, dx:dx + w], k[dy, dx])
  return out


def _conv3x3(q, k, chunk=None, direct=True):
  """fp.conv3x3 of integer arrays q [B, H, W, C] and k [3, 3, C, O] (as float32)."""
  k = np.asarray(k)
  return fp.conv3x3(tf.constant(q, tf.float32), tf.constant(k.reshape([-1, k.shape[-1]]),
                                                            tf.float32), chunk, direct)


def test_patches3x3_layout_and_zero_padding():
  q = np.arange(1, 1 + 2 * 3 * 4 * 2, dtype=np.int64).reshape([2, 3, 4, 2])
  p = _np(fp.patches3x3(tf.constant(q)))
  assert p.shape == (2, 3, 4, 18) and p.dtype == np.int64
  padded = np.pad(q, [(0, 0), (1, 1), (1, 1), (0, 0)])
  for y in range(3):
    for x in range(4):
      # Channel order (dy, dx, c).
      np.testing.assert_array_equal(p[:, y, x], padded[:, y:y + 3, x:x + 3].reshape([2, -1]))
  assert (p[:, 0, :, :6] == 0).all() and (p[:, :, 0, 0:2] == 0).all()


@pytest.mark.parametrize("fan_in", [1, 9, 64, 128, 129, 512, 513, 1152, 2304, 4608, 100000])
def test_gemm_limits_keep_every_chunk_below_two_to_the_24(fan_in):
  weight_max, chunk = fp.gemm_limits(fan_in)
  assert fp.MIN_WEIGHT_MAX <= weight_max <= fp.GEMM_WEIGHT_MAX
  assert chunk * fp.GEMM_INPUT_MAX * weight_max < fp.F32_SUM_BOUND
  chunks = -(-fan_in // chunk)
  assert -(-fan_in // chunks) == chunk  # Chunks of equal size, the last one shorter.
  if chunks > 1:  # The fewest chunks: one fewer leaves too few weight levels.
    fewer = -(-fan_in // (chunks - 1))
    assert (fp.F32_SUM_BOUND - 1) // (fewer * fp.GEMM_INPUT_MAX) < fp.MIN_WEIGHT_MAX
  # The largest weight limit at that chunk size.
  assert (min(fp.GEMM_WEIGHT_MAX, weight_max + 1) == weight_max or
          chunk * fp.GEMM_INPUT_MAX * (weight_max + 1) >= fp.F32_SUM_BOUND)
  # Operands within 11 significant bits: exact in TF32 and float16 as well.
  assert fp.GEMM_INPUT_MAX <= 2**11 and fp.GEMM_WEIGHT_MAX < 2**11


def test_gemm_limits_refuse_inputs_outside_the_narrowed_range():
  for bad in (0, fp.GEMM_INPUT_MAX + 1):
    with pytest.raises(fp.BoundError, match="matmul input limit"):
      fp.gemm_limits(16, bad)
  assert fp.gemm_limits(16, 1) == (fp.GEMM_WEIGHT_MAX, 16)


def _edge_operands(rng, shape_a, n, o, weight_max):
  """Operands at the limits, random signs, and one output channel whose sums
  all have one sign: partial sums up to chunk * 256 * weight_max, with odd
  low bits so that any float32 rounding would show."""
  a = fp.GEMM_INPUT_MAX * rng.choice([-1, 1], [*shape_a, n])
  a[..., ::7] -= np.sign(a[..., ::7])  # 255s among the 256s.
  w = weight_max * rng.choice([-1, 1], [n, o])
  w[::5] -= np.sign(w[::5])
  w[:, 0] = np.abs(w[:, 0])
  a.reshape(-1, n)[0] = np.abs(a.reshape(-1, n)[0])
  return a.astype(np.int64), w.astype(np.int64)


@pytest.mark.parametrize("n", [300, 1152, 4608])
def test_matmul_exact_at_the_float32_bound(n):
  rng = np.random.default_rng(n)
  weight_max, chunk = fp.gemm_limits(n)
  a, w = _edge_operands(rng, [6], n, 5, weight_max)
  expected = (_ints(a) @ _ints(w)).tolist()
  # One chunk (n = 300) reaches up to 2^24; more chunks, beyond it.
  assert expected[0][0] > (2**24 if chunk < n else 2**23)
  assert expected[0][0] == int(np.abs(a[0]) @ np.abs(w[:, 0]))
  args = tf.constant(a, tf.float32), tf.constant(w, tf.float32), chunk
  assert _np(fp.matmul(*args)).tolist() == expected
  jit = tf.function(lambda a, w: fp.matmul(a, w, chunk), jit_compile=True)
  assert _np(jit(*args[:2])).tolist() == expected
  # Leading axes are kept: [2, 3, n] x [n, 5] -> [2, 3, 5].
  got = _np(fp.matmul(tf.reshape(args[0], [2, 3, n]), args[1], chunk))
  assert got.dtype == np.int64 and got.reshape([6, 5]).tolist() == expected
  if chunk < n:  # Without the chunks float32 sums pass 2^24 and round: they are needed.
    assert _np(fp.matmul(*args[:2])).tolist() != expected


@pytest.mark.parametrize("shape,channels", [((2, 5, 7), (3, 4)), ((3, 4, 4), (16, 8)),
                                            ((1, 1, 1), (2, 3)), ((2, 2, 9), (5, 1)),
                                            ((2, 4, 4), (130, 3))])
@pytest.mark.parametrize("direct", [True, False])
def test_random_conv3x3_equals_the_numpy_int64_convolution(shape, channels, direct):
  rng = np.random.default_rng(sum(shape) + sum(channels))
  c, o = channels
  weight_max, chunk = fp.gemm_limits(9 * c)
  q = rng.integers(-fp.GEMM_INPUT_MAX, fp.GEMM_INPUT_MAX + 1, [*shape, c], dtype=np.int64)
  k = rng.integers(-weight_max, weight_max + 1, [3, 3, c, o], dtype=np.int64)
  got = _np(_conv3x3(q, k, chunk, direct))
  assert got.dtype == np.int64
  np.testing.assert_array_equal(got, _conv3x3_reference(q, k))
  # Keras' float conv agrees on small integers (where float32 is exact too): same layout.
  small_q, small_k = q % 7 - 3, k % 5 - 2
  keras = tf.nn.conv2d(tf.constant(small_q, tf.float32), tf.constant(small_k, tf.float32),
                       1, "SAME")
  np.testing.assert_array_equal(_np(_conv3x3(small_q, small_k, None, direct)),
                                _np(keras).astype(np.int64))


@pytest.mark.parametrize("direct", [True, False])
@pytest.mark.parametrize("jit", [False, True])
def test_conv3x3_exact_at_the_bound_edge(direct, jit):
  # Fan-in 9 * 256 at the operand limits: sums far beyond float32's 2^24,
  # every chunk's just below it.
  rng = np.random.default_rng(6)
  c, o = 256, 3
  weight_max, chunk = fp.gemm_limits(9 * c)
  assert chunk < 9 * c
  a, _ = _edge_operands(rng, [2, 3, 3], c, o, weight_max)
  _, w = _edge_operands(rng, [1], 9 * c, o, weight_max)
  k = w.reshape([3, 3, c, o])
  a[0] = np.abs(a[0])
  expected = _conv3x3_reference(a, k)
  # The centre of the first image sees all of it, every term positive.
  assert expected[0, 1, 1, 0] == int((a[0] * k[..., 0]).sum()) > 2**26
  conv = lambda x, kernel: fp.conv3x3(x, kernel, chunk, direct)
  if jit:
    conv = tf.function(conv, jit_compile=True)
  got = conv(tf.constant(a, tf.float32), tf.constant(k.reshape([-1, o]), tf.float32))
  np.testing.assert_array_equal(_np(got), expected)


# ---------------------------------------------------------------- Linear ---


def _linear_weights(rng, n=40):
  """Float weights [n, 6] with very different column scales and a zero column."""
  scales = np.array([1e-3, 0.1, 1.0, 7.3, 300.0, 0.0])
  w = rng.normal(0, 1, [n, len(scales)]) * scales
  return w, rng.normal(0, 0.5, len(scales))


def test_linear_per_channel_weight_quantisation():
  rng = np.random.default_rng(8)
  w, b = _linear_weights(rng)
  f_in = 9
  layer = fp.Linear(w, b, f_in, "dense", f_out=6)
  assert layer.w.dtype == layer.b.dtype == layer.g.dtype == np.int64
  assert (layer.weight_max, layer.chunk) == fp.gemm_limits(w.shape[0])
  assert np.abs(layer.w).max() <= layer.weight_max
  for c in range(w.shape[1]):
    peak = np.abs(w[:, c]).max()
    g = int(layer.g[c])
    column = [int(v) for v in layer.w[:, c]]
    if peak == 0:
      assert g == 0 and not any(column)
      continue
    # g is the largest exponent with peak 2^g <= weight_max; the column uses the range.
    top = layer.weight_max
    assert Fraction(peak) * Fraction(2)**g <= top < Fraction(peak) * Fraction(2)**(g + 1)
    assert max(abs(v) for v in column) > top / 2
    for v, x in zip(column, w[:, c]):
      assert abs(Fraction(v) - Fraction(x) * Fraction(2)**g) <= Fraction(1, 2)
    # The bias at exponent f_in + g_c.
    exact = Fraction(b[c]) * Fraction(2)**(g + f_in)
    assert abs(Fraction(int(layer.b[c])) - exact) <= Fraction(1, 2)
  arrays = layer.arrays()
  assert len(arrays) == 4
  assert arrays[3].tolist() == [f_in, 6, fp.ACT_MAX, fp.GEMM_INPUT_MAX, layer.chunk]


def test_linear_requantize_against_the_documented_formula():
  rng = np.random.default_rng(9)
  w, b = _linear_weights(rng)
  f_in, f_out = 9, 5
  layer = fp.Linear(w, b, f_in, "dense", f_out=f_out)
  q = rng.integers(-fp.GEMM_INPUT_MAX, fp.GEMM_INPUT_MAX + 1, [50, w.shape[0]], dtype=np.int64)
  acc = layer.product(tf.constant(q, tf.float32), tf.constant(layer.w, tf.float32)) + layer.b
  expected_acc = _ints(q) @ _ints(layer.w) + _ints(layer.b)
  assert _np(acc).tolist() == expected_acc.tolist()
  got = _np(layer.requantize(acc))
  # y_c = clip(round half up(acc_c 2^(f_out - f_in - g_c)), +-limit).
  for (r, c), a in np.ndenumerate(expected_acc):
    y = _round_half_up(Fraction(a) * Fraction(2)**(f_out - f_in - int(layer.g[c])))
    assert got[r, c] == max(-fp.ACT_MAX, min(fp.ACT_MAX, y)), (r, c)
  assert (np.abs(got[:, 4]) == fp.ACT_MAX).any()  # The large column saturates at f_out 5.
  # Where nothing saturates, y 2^-f_out is x w + b up to the quantisation errors.
  x = q * 2.0**-f_in
  exact = x @ w + b
  err_bound = (np.abs(x).sum(1, keepdims=True) * 0.5 * 2.0**-layer.g
               + 0.5 * 2.0**-(layer.g + f_in) + 0.5 * 2.0**-f_out)
  fine = np.abs(got) < fp.ACT_MAX
  assert (np.abs(got * 2.0**-f_out - exact) <= err_bound * (1 + 1e-9))[fine].all()


def test_linear_calibration_picks_the_documented_exponent():
  rng = np.random.default_rng(10)
  w, b = _linear_weights(rng)
  for limit in (fp.ACT_MAX, 2**40):
    layer = fp.Linear(w, b, 9, "calibrated", limit=limit)
    assert layer.f_out is None
    q = rng.integers(-fp.GEMM_INPUT_MAX, fp.GEMM_INPUT_MAX + 1, [30, w.shape[0]],
                     dtype=np.int64)
    acc = layer.product(tf.constant(q, tf.float32), tf.constant(layer.w, tf.float32)) + layer.b
    y = _np(layer.requantize(acc))
    # The largest f_out with 2 peak 2^f_out <= limit, peak the largest |value| of the batch.
    values = [Fraction(int(a)) * Fraction(2)**-(9 + int(layer.g[c]))
              for (_, c), a in np.ndenumerate(_np(acc))]
    peak = max(abs(v) for v in values)
    f = layer.f_out
    assert 2 * peak * Fraction(2)**f <= limit < 2 * peak * Fraction(2)**(f + 1), limit
    # At that exponent the calibration batch does not saturate and uses the range.
    assert limit // 4 <= np.abs(y).max() <= limit // 2 + 1
    # Later calls keep the exponent.
    layer.requantize(acc * 0)
    assert layer.f_out == f


def test_linear_narrow_rounds_to_the_input_exponent_and_saturates():
  layer = fp.Linear(np.ones([3, 1]), None, 4, "narrow", f_out=0)
  q = np.array([[16, 24, -24], [8, -8, 7], [2**15 - 1, -2**15 + 1, 4095]], np.int64)
  got = _np(layer.narrow(tf.constant(q), 8))  # From exponent 8 to 4: round half up of q / 16.
  assert got.dtype == np.float32
  expected = [[max(-256, min(256, _round_half_up(Fraction(int(v), 16)))) for v in row]
              for row in q]
  assert got.tolist() == expected
  assert expected[0] == [1, 2, -1] and expected[1] == [1, 0, 0] and expected[2] == [256, -256, 256]


def test_linear_bias_too_large_for_its_exponent_raises():
  with pytest.raises(fp.BoundError, match="big_bias: bias too large"):
    fp.Linear(np.full([4, 1], 1.0), [2.0**40], 10, "big_bias")


# --------------------------------------------------------- Normalization ---


R = 25  # fixed_point's reciprocal bits, as documented.


def _normalization_reference(op, q):
  """The documented integer formula in Python ints: q int64 [B, ..., C] -> nested list."""
  q = np.asarray(q)
  c = q.shape[-1]
  size = c // op.groups
  out = np.empty(q.shape, object)
  if op.spatial:  # One unit per (row, group).
    units = [np.s_[b, ..., g * size:(g + 1) * size]
             for b in range(q.shape[0]) for g in range(op.groups)]
  else:  # One unit per (position, group).
    units = [np.s_[(*index, slice(g * size, (g + 1) * size))]
             for index in np.ndindex(q.shape[:-1]) for g in range(op.groups)]
  for where in units:
    x = [int(v) for v in q[where].reshape(-1)]
    n = len(x)
    mean = _round_half_up(Fraction(sum(x), n))
    total = sum((v - mean)**2 for v in x)
    var = _round_half_up(Fraction(total * 4**op.std_bits, n))
    std = math.isqrt(var + op.eps)
    # The normalised reciprocal: R significant bits of 2^e / std.
    e = std.bit_length() - 1
    reciprocal = 2**(R + e) // std
    block = q[where] - mean
    gamma = _ints(op.gamma)[where[-1]]
    beta = _ints(op.beta)[where[-1]]
    y = np.empty(block.shape, object)
    for index in np.ndindex(block.shape):
      ch = index[-1]
      value = _round_half_up(Fraction(int(block[index]) * int(gamma[ch]) * reciprocal,
                                      2**(R + e - op.shift)))
      y[index] = max(-fp.ACT_MAX, min(fp.ACT_MAX, value + int(beta[ch])))
    out[where] = y
  return out.tolist()


def _norm_inputs(rng, shape, f_in):
  """int64 activations: per-row offsets and scales, a near-constant row, a saturated one."""
  scale = np.exp(rng.uniform(np.log(0.5), np.log(3.0), [shape[0], *[1] * (len(shape) - 1)]))
  x = rng.normal(0, 1, shape) * scale + rng.normal(0, 2, scale.shape)
  q = np.clip(np.round(x * 2.0**f_in), -fp.ACT_MAX, fp.ACT_MAX).astype(np.int64)
  q[1] = 7 + rng.integers(0, 2, q[1].shape)  # std ~0.5 units: eps and rounding matter.
  q[2].reshape(-1)[::3] = fp.ACT_MAX
  q[2].reshape(-1)[1::3] = -fp.ACT_MAX
  return q


def _check_parameters(op, gamma, beta, epsilon, f_in, f_out):
  peak = np.abs(gamma).max()
  assert op.std_bits == 15
  assert op.g == min(math.floor(math.log2(fp.WEIGHT_MAX / peak)), 15 + f_out)
  assert np.abs(op.gamma).max() <= fp.WEIGHT_MAX
  np.testing.assert_array_equal(op.gamma, np.round(gamma * 2.0**op.g))
  np.testing.assert_array_equal(op.beta, np.round(beta * 2.0**f_out))
  assert op.eps == max(1, round(epsilon * 2.0**(2 * (f_in + 15))))
  assert op.shift == 15 + f_out - op.g


@pytest.mark.parametrize("kind", ["group", "layer"])
def test_normalization_against_big_ints_and_keras(kind):
  rng = np.random.default_rng(11 if kind == "group" else 12)
  f_in, f_out, epsilon = 11, fp.TABLE_EXPONENT, 1e-6
  if kind == "group":
    shape, groups, channels = (4, 4, 4, 16), 4, 16
    keras = tf.keras.layers.GroupNormalization(groups=groups, epsilon=epsilon, dtype="float64")
  else:
    shape, groups, channels = (4, 8, 16), 1, 16
    keras = tf.keras.layers.LayerNormalization(epsilon=epsilon, dtype="float64")
  gamma = 1.0 + rng.normal(0, 0.1, channels)
  beta = rng.normal(0, 0.1, channels)
  op = fp.Normalization(gamma, beta, epsilon, groups, kind == "group", f_in, f_out, kind)
  _check_parameters(op, gamma, beta, epsilon, f_in, f_out)
  q = _norm_inputs(rng, shape, f_in)
  got = _np(op(tf.constant(q)))
  assert got.dtype == np.int64 and got.shape == shape
  assert got.tolist() == _normalization_reference(op, q)
  assert _np(tf.function(op.__call__, jit_compile=True)(tf.constant(q))).tolist() == got.tolist()
  # Close to the float layer on the dequantised input, where std >> 1 input unit.
  keras.build(shape)
  keras.gamma.assign(gamma)
  keras.beta.assign(beta)
  expected = _np(keras(q * 2.0**-f_in)) * 2.0**f_out
  err = np.abs(got - expected)[[0, 2, 3]]
  assert err.max() <= 3.0 and err.mean() < 1.0, (err.max(), err.mean())


def test_normalization_keeps_rows_independent():
  rng = np.random.default_rng(13)
  op = fp.Normalization(np.ones(8), np.zeros(8), 1e-6, 2, True, 9, 10, "gn")
  q = _norm_inputs(rng, (5, 3, 3, 8), 9)
  whole = _np(op(tf.constant(q)))
  for r in range(5):
    np.testing.assert_array_equal(_np(op(tf.constant(q[r:r + 1])))[0], whole[r])


def test_normalization_exact_at_the_largest_allowed_shift():
  # gamma ~800 gives g = 1 and shift 15 + 10 - 1 = 24, the largest below R = 25:
  # the final right shift is R + e - 24 >= 1, and |d gamma r| reaches 2^51.
  rng = np.random.default_rng(16)
  gamma = rng.uniform(600, 1000, 8) * rng.choice([-1, 1], 8)
  op = fp.Normalization(gamma, rng.normal(0, 3, 8), 1e-6, 2, False, 0, 10, "edge")
  assert op.shift == 24 and op.arrays()[2][-1] == R
  q = rng.integers(-fp.ACT_MAX, fp.ACT_MAX + 1, [3, 5, 8], dtype=np.int64)
  q[0, 0] = [fp.ACT_MAX, -fp.ACT_MAX] * 4
  q[1, 1] = 11  # d = 0 everywhere: y = beta.
  q[1, 2, :4] = [3, 3, 3, 4]
  q[2, 0] = [0, 0, 0, 1, 5, 5, 5, 4]  # Tiny spreads: std near 2^15, e small.
  got = _np(op(tf.constant(q)))
  assert got.tolist() == _normalization_reference(op, q)
  np.testing.assert_array_equal(got[1, 1], op.beta)
  assert (np.abs(got[0, 0]) == fp.ACT_MAX).all()
  jit = tf.function(op.__call__, jit_compile=True)
  assert _np(jit(tf.constant(q))).tolist() == got.tolist()


@pytest.mark.parametrize("f_in", [20, 24, 26, 27])
def test_normalization_of_tiny_activations_where_epsilon_dominates(f_in):
  # At f_in 26, eps = 1e-6 2^(2 (26 + 15)) ~ 2^62.07 would not fit: the standard
  # deviation keeps fewer extra bits (14; 13 at f_in 27), and stays exact.
  rng = np.random.default_rng(f_in)
  op = fp.Normalization(1 + rng.normal(0, 0.1, 8), rng.normal(0, 0.1, 8), 1e-6, 1, False, f_in,
                        10, "ln")
  assert op.std_bits == {20: 15, 24: 15, 26: 14, 27: 13}[f_in]
  assert op.eps < 2**62 - 2**60 and op.eps == round(1e-6 * 2.0**(2 * (f_in + op.std_bits)))
  q = rng.integers(-fp.ACT_MAX, fp.ACT_MAX + 1, [2, 6, 8], dtype=np.int64)
  q[0, 0] = [fp.ACT_MAX, -fp.ACT_MAX] * 4
  assert _np(op(tf.constant(q))).tolist() == _normalization_reference(op, q)


def test_normalization_refuses_an_epsilon_that_no_precision_fits():
  with pytest.raises(fp.BoundError, match="tiny: epsilon too large at input exponent 41"):
    fp.Normalization(np.ones(4), np.zeros(4), 1e-6, 1, False, 41, 10, "tiny")


def test_normalization_shift_too_large_raises():
  # gamma 2^20 needs g = -10: shift 15 + 10 + 10 = 35 >= R = 25.
  with pytest.raises(fp.BoundError, match="huge: normalisation shift"):
    fp.Normalization(np.full(4, 2.0**20), np.zeros(4), 1e-6, 1, False, 8, 10, "huge")


# ----------------------------------------------------------------- table ---


def _decimal_pi():
  """pi to the current decimal precision (Machin: 16 atan(1/5) - 4 atan(1/239))."""
  def atan_inv(n):
    total, power, k = decimal.Decimal(0), decimal.Decimal(1) / n, 0
    eps = decimal.Decimal(10)**-(decimal.getcontext().prec + 2)
    while power > eps:
      term = power / (2 * k + 1)
      total += -term if k % 2 else term
      power /= n * n
      k += 1
    return total
  return 16 * atan_inv(5) - 4 * atan_inv(239)


def _reference_function(name, x, pi):
  if name == "exp_neg":
    return (-x).exp()
  if name == "swish":
    return x / (1 + (-x).exp())
  # gelu_tanh: x/2 (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))), tanh u = 1 - 2/(e^2u + 1).
  u = (2 / pi).sqrt() * (x + decimal.Decimal("0.044715") * x**3)
  return x / 2 * (2 - 2 / ((2 * u).exp() + 1))


def _reference_entries(name, f_in, f_out, indices):
  """Correctly rounded round(fn(i 2^-f_in) 2^f_out) (half up), 60 digits."""
  with decimal.localcontext() as ctx:
    ctx.prec = 60
    pi = _decimal_pi()
    out = []
    for i in indices:
      x = decimal.Decimal(int(i)) / decimal.Decimal(2)**f_in
      value = _reference_function(name, x, pi) * decimal.Decimal(2)**f_out
      out.append(int((value + decimal.Decimal("0.5")).to_integral_value(decimal.ROUND_FLOOR)))
    return out


def _float_gelu(x):
  return 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x**3)))


# float64 versions, only to find the entries nearest a rounding boundary.
_FLOAT = {"swish": lambda x: x / (1 + np.exp(-x)), "gelu_tanh": _float_gelu}


@pytest.mark.parametrize("name,f", [("swish", 10), ("swish", 7), ("gelu_tanh", 10),
                                    ("gelu_tanh", 13)])
def test_nonlinearity_tables_are_correctly_rounded(name, f):
  values = fp.Nonlinearity(name, f).values
  assert values.dtype == np.int64 and len(values) == 2 * fp.ACT_MAX + 1
  i = np.arange(-fp.ACT_MAX, fp.ACT_MAX + 1)
  # A sample: random entries, both ends, 0, and the 40 entries closest to a .5 boundary.
  scaled = _FLOAT[name](i * 2.0**-f) * 2.0**f
  nearest = np.argsort(np.abs(scaled - np.floor(scaled) - 0.5))[:40]
  rng = np.random.default_rng(f)
  sample = np.unique(np.concatenate([rng.integers(0, len(i), 300), nearest,
                                     [0, 1, fp.ACT_MAX, len(i) - 2, len(i) - 1]]))
  assert values[sample].tolist() == _reference_entries(name, f, f, i[sample])
  assert values[fp.ACT_MAX] == 0  # fn(0) = 0.
  assert fp.table(name, f, f, -fp.ACT_MAX, fp.ACT_MAX) is values  # Cached, shared.


def test_exp_table_is_correctly_rounded_everywhere():
  values = fp.exp_table()
  assert values.dtype == np.int64
  assert values[0] == 2**fp.EXP_BITS and values[-1] == 0
  assert (np.diff(values) <= 0).all()
  # exp(-d / 2^10) 2^20 < 1/2 from d > 21 ln 2 2^10 on: the first zero.
  first_zero = math.floor((fp.EXP_BITS + 1) * math.log(2) * 2**fp.TABLE_EXPONENT) + 1
  assert values[first_zero - 1] == 1 and values[first_zero] == 0
  assert len(values) - first_zero <= 3  # Little padding.
  # Every entry, against 60-digit decimal exp.
  assert values.tolist() == _reference_entries("exp_neg", fp.TABLE_EXPONENT, fp.EXP_BITS,
                                               range(len(values)))


# --------------------------------------------- softmax weights, frequencies ---


def test_softmax_weights_against_the_table():
  table = fp.exp_table()
  rng = np.random.default_rng(14)
  logits = rng.integers(-2**14, 2**14, [3, 7, 33], dtype=np.int64)
  logits[0, 0] = 5  # All equal.
  logits[1, 0, :5] = [2**40, -2**40, 2**40 - 14000, 2**40 - 15000, 0]  # Far beyond the table.
  got = _np(fp.softmax_weights(tf.constant(logits), tf.constant(table)))
  d = logits.max(-1, keepdims=True) - logits
  np.testing.assert_array_equal(got, table[np.minimum(d, len(table) - 1)])
  assert (got[0, 0] == 2**fp.EXP_BITS).all()
  assert (got.max(-1) == 2**fp.EXP_BITS).all()  # The maximum's weight.
  assert got[1, 0, 1] == 0 and got[1, 0, 3] == 0 and got[1, 0, 2] > 0
  # Within one unit of exp(l - max) 2^20 (the table is correctly rounded).
  exact = np.exp(-d * 2.0**-fp.TABLE_EXPONENT) * 2.0**fp.EXP_BITS
  assert np.abs(got - exact).max() <= 0.5 + 1e-6


def test_frequencies_floor_and_impossible_classes():
  rng = np.random.default_rng(15)
  weights = rng.integers(0, 2**fp.EXP_BITS + 1, [4, 6, 9], dtype=np.int64)
  weights[0, 0] = 0
  weights[0, 0, 3] = 2**fp.EXP_BITS
  real = rng.random([4, 6, 9]) < 0.7
  real[..., 0] = True
  got = _np(fp.frequencies(tf.constant(weights), tf.constant(real)))
  total = np.where(real, weights, 0).sum(-1, keepdims=True)
  np.testing.assert_array_equal(got, np.where(real, weights + total // 2**16 + 1, 0))
  assert (got[real] >= 1).all() and (got[~real] == 0).all()
  # All real: the floor counts every class.
  got = _np(fp.frequencies(tf.constant(weights)))
  np.testing.assert_array_equal(got, weights + weights.sum(-1, keepdims=True) // 2**16 + 1)
  assert got[0, 0].tolist() == [17] * 3 + [2**20 + 17] + [17] * 5  # 2^20 // 2^16 + 1.


@pytest.mark.parametrize("k", [2, 4, 8, 16, 256])
def test_equal_logits_give_exact_half_levels_at_every_node(k):
  logits = np.array([[0] * k, [-777777] * k, [2**39] * k], np.int64)
  weights = fp.softmax_weights(tf.constant(logits), tf.constant(fp.exp_table()))
  assert (_np(weights) == 2**fp.EXP_BITS).all()
  freqs = fp.frequencies(weights)
  expected = 2**fp.EXP_BITS + k * 2**fp.EXP_BITS // 2**16 + 1
  assert (_np(freqs) == expected).all()
  levels = _np(range_coder.node_levels(freqs))
  # Level 2^15 / 2^16 = 1/2 is table row 32767 at each of the k - 1 nodes.
  assert levels.shape == (3, k - 1) and (levels == 32767).all()


# ------------------------------------------- prefix sums, attention limits ---


@pytest.mark.parametrize("n", [1, 4, 15, 16, 17, 256, 300])
@pytest.mark.parametrize("jit", [False, True])
def test_prefix_sums_are_the_exact_exclusive_cumulative_sums(n, jit):
  rng = np.random.default_rng(n)
  weights = rng.integers(0, 2**fp.EXP_BITS + 1, [3, 2, n]).astype(np.int32)
  weights[0, 0] = 2**fp.EXP_BITS  # The largest sums: n 2^20.
  weights[1, 1] = 0
  fn = tf.function(fp.prefix_sums, jit_compile=True) if jit else fp.prefix_sums
  got = _np(fn(tf.constant(weights)))
  assert got.dtype == np.int32 and got.shape == (3, 2, n + 1)
  expected = np.concatenate([np.zeros([3, 2, 1], np.int64),
                             np.cumsum(weights.astype(np.int64), -1)], -1)
  np.testing.assert_array_equal(got, expected)
  assert got[0, 0, -1] == n * 2**fp.EXP_BITS


@pytest.mark.parametrize("length", [1, 16, 63, 64, 250, 256, 1024, 4096])
def test_attention_limits_keep_the_weighted_sums_below_two_to_the_24(length):
  bits, chunk = fp.attention_limits(length)
  assert fp.MIN_ATTENTION_BITS <= bits <= fp.EXP_BITS
  assert chunk * fp.GEMM_INPUT_MAX * 2**bits < fp.F32_SUM_BOUND
  assert chunk * fp.GEMM_INPUT_MAX * 2**(bits + 1) >= fp.F32_SUM_BOUND or bits == fp.EXP_BITS
  chunks = -(-length // chunk)
  if chunks > 1:  # The fewest chunks.
    fewer = -(-length // (chunks - 1))
    assert fewer * fp.GEMM_INPUT_MAX * 2**fp.MIN_ATTENTION_BITS >= fp.F32_SUM_BOUND
  assert fp.attention_limits(250) == (10, 63) and fp.attention_limits(16) == (11, 16)


# --------------------------------------------------------------- attention ---


def _attention_reference(q, k, v, shift, bits, bias, mean_bits):
  """The documented attention in Python ints: logits, table weights, the
  rounded weighted mean (no chunks, no float types)."""
  q, k, v = _ints(q), _ints(k), _ints(v)
  raw = np.einsum("bqhd,bkhd->bhqk", q, k)
  if shift > 0:
    logits = (raw + 2**(shift - 1)) // 2**shift
  else:
    logits = raw * 2**-shift
  logits = np.clip(logits, -fp.LOGIT_LIMIT, fp.LOGIT_LIMIT)
  if bias is not None:
    logits = logits + _ints(bias)
  s = fp.EXP_BITS - bits
  table = [(int(t) + (2**(s - 1) if s else 0)) // 2**s for t in fp.exp_table()]
  d = logits.max(-1, keepdims=True) - logits
  w = np.vectorize(lambda i: table[min(int(i), len(table) - 1)], otypes=[object])(d)
  num = np.einsum("bhqk,bkhd->bqhd", w, v) * 2**mean_bits
  den = np.transpose(w.sum(-1), [0, 2, 1])[..., None]
  return (2 * num + den) // (2 * den)


@pytest.mark.parametrize("length, shift, with_bias", [
    (16, 3, False),  # One chunk, int32.
    (250, -2, True),  # Five chunks of 50 (no padding), int32, ALiBi-like bias.
    (127, 0, True),  # A prime length: 3 chunks of 43, the last zero padded.
    (64, -7, False),  # 2^31 > 2^30: int64 logits.
])
@pytest.mark.parametrize("jit", [False, True])
def test_attention_against_python_ints(length, shift, with_bias, jit):
  heads, dim, batch, mean_bits = 2, 8, 2, 4
  limit = fp.attention_input_max(dim)
  bits, chunk = fp.attention_limits(length)
  rng = np.random.default_rng(length)
  q = rng.integers(-limit, limit + 1, [batch, length, heads, dim])
  k = rng.integers(-limit, limit + 1, [batch, length, heads, dim])
  v = rng.integers(-fp.GEMM_INPUT_MAX, fp.GEMM_INPUT_MAX + 1, [batch, length, heads, dim])
  # Row 0 at the bounds' edge: q . k = dim limit^2 < 2^24 for the first query.
  q[0, 0], k[0, :] = limit, limit
  v[0, :, 0] = fp.GEMM_INPUT_MAX
  bias = -rng.integers(0, 2**14, [heads, length, length]) if with_bias else None
  peak = 0 if bias is None else int(np.abs(bias).max())
  dtype = fp.attention_logit_dtype(shift, peak)
  assert (dtype == tf.int64) == (shift == -7)
  expected = _attention_reference(q, k, v, shift, bits, bias, mean_bits)
  table = tf.constant(fp.attention_table(bits).astype(np.float32))

  def run(dtype):
    fn = lambda *a: fp.attention(*a, shift, table, chunk,
                                 None if bias is None else tf.constant(bias, dtype),
                                 mean_bits, dtype)
    fn = tf.function(fn, jit_compile=True) if jit else fn
    return _np(fn(*[tf.constant(a.astype(np.float32)) for a in (q, k, v)]))

  got = run(dtype)
  assert got.dtype == np.int64 and got.shape == (batch, length, heads, dim)
  np.testing.assert_array_equal(got.astype(object), expected)
  if dtype == tf.int32:  # The int64 path gives the same integers.
    np.testing.assert_array_equal(run(tf.int64), got)


def test_attention_split_and_logit_type_bounds():
  assert fp.attention_split(250, 63) == (5, 50)
  assert fp.attention_split(127, 63) == (3, 43)  # 127 is prime: padded.
  assert fp.attention_split(16, 16) == (1, 16)
  for length in range(1, 600, 7):
    for chunk in (16, 63, 100):
      chunks, size = fp.attention_split(length, chunk)
      assert size <= chunk and chunks * size >= length > (chunks - 1) * size
  assert fp.attention_input_max(24) == 836 and 24 * 836**2 < fp.F32_SUM_BOUND
  assert fp.attention_logit_dtype(0) == tf.int32 and fp.attention_logit_dtype(-5) == tf.int32
  assert fp.attention_logit_dtype(-6) == tf.int64  # 2^30 + 1.
  assert fp.attention_logit_dtype(-5, 2**29) == tf.int64
  assert (fp.attention_table(10) == (fp.exp_table() + 512) // 1024).all()
  assert (fp.attention_table(fp.EXP_BITS) == fp.exp_table()).all()
