"""A discretized logistic mixture over K ordered classes, as a network's output.

The categorical output gives each of the K pixel values its own logit, so a
network has to learn from data that value 117 lies between 116 and 118. A
mixture of M logistics on the real line, cut into K bins, knows it from the
start (spec §5.8 for images; the parametrisation and near-uniform start are
those of the audio head, spec §7.4).

Parameters, per position, float32 [..., 3M] from the network, in this order:
  * M mixture logits;
  * M means, added to `offsets(M)` (evenly spread over [-1, 1]) and clipped
    to [-MEAN_LIMIT, MEAN_LIMIT];
  * M log-scales, shifted by -ln M and clipped to [MIN_LOG_SCALE, MAX_LOG_SCALE].
With all parameters 0 the M components tile [-1, 1] with scale 1/M and equal
weights: near-uniform over the classes.

Class k of K covers [2k/K - 1, 2(k+1)/K - 1] of the line; the first and the
last class extend to -inf and +inf, so the K probabilities are CDF
differences that sum to 1. `log_probs` returns their logarithms, which every
consumer of categorical logits takes as they are (objective, sampling,
likelihoods, the Upscale data parametrisation, the float coder's
probabilities): a log-softmax of normalised log-probabilities changes
nothing. `LogisticMixture` wraps a network so that its output is those
log-probabilities; the integer version the codec uses is
`networks.integer.IntegerLogisticMixture`.
"""
import math

import numpy as np
import tensorflow as tf

MEAN_LIMIT = 2.0
MIN_LOG_SCALE = -7.0
MAX_LOG_SCALE = 7.0
# Stand-ins for -inf and +inf in the logistic's standardised coordinate:
# finite, so that no gradient meets inf * 0.
_FAR = 1e30


def offsets(num_mixtures):
  """float64 [M]: the components' mean offsets, linspace(-1 + 1/M, 1 - 1/M, M)."""
  m = int(num_mixtures)
  return np.linspace(-1.0 + 1.0 / m, 1.0 - 1.0 / m, m)


def edges(num_classes):
  """float64 [K - 1]: the inner bin edges 2k/K - 1, k = 1 .. K - 1."""
  k = int(num_classes)
  return 2.0 * np.arange(1, k) / k - 1.0


def parameters(raw, num_mixtures):
  """(mixture logits, means, log-scales), float32 [..., M] each, from raw [..., 3M]."""
  m = int(num_mixtures)
  raw = tf.cast(raw, tf.float32)
  logits, means, log_scales = raw[..., :m], raw[..., m:2 * m], raw[..., 2 * m:3 * m]
  means = tf.clip_by_value(means + tf.constant(offsets(m), tf.float32), -MEAN_LIMIT,
                           MEAN_LIMIT)
  log_scales = tf.clip_by_value(log_scales - math.log(m), MIN_LOG_SCALE, MAX_LOG_SCALE)
  return logits, means, log_scales


def log_probs(raw, num_classes, num_mixtures):
  """log P(class k) float32 [..., K] (nats) of the mixture with raw parameters [..., 3M].

  Each component's bin mass is sigma(b) - sigma(a) for the standardised bin
  ends a < b, computed as -softplus(-b) - softplus(a) + log(-expm1(a - b)),
  which stays accurate in both tails and for bins far narrower than the
  scale. Memory: [..., M, K] float32 intermediates.
  """
  logits, means, log_scales = parameters(raw, num_mixtures)
  inner = (tf.constant(edges(num_classes), tf.float32) - means[..., None]) * tf.exp(
      -log_scales)[..., None]  # [..., M, K - 1]
  far = tf.fill(tf.concat([tf.shape(inner)[:-1], [1]], 0), _FAR)
  lower = tf.concat([-far, inner], -1)  # [..., M, K]
  upper = tf.concat([inner, far], -1)
  weights = tf.nn.log_softmax(logits)[..., None]
  return tf.reduce_logsumexp(weights + _log_bin_mass(lower, upper), axis=-2)


def range_log_prob(raw, lower, upper, num_classes, num_mixtures):
  """log P(lower <= class < upper) float32 [...] (nats), for classes in order.

  raw: float [..., 3M]; lower < upper: int32 [...] in [0, K]. The mass of
  the classes lower .. upper - 1 is one CDF difference per component, from
  the same edges and the same tail-safe formula as `log_probs`: [..., M]
  intermediates instead of [..., M, K], so that a training step's loss
  costs O(M) per position rather than O(M K). Class 0 extends to -inf and
  class K - 1 to +inf (the whole range has log-mass 0). Agrees with the
  logsumexp of `log_probs` over the range to float32 rounding.
  """
  k = int(num_classes)
  logits, means, log_scales = parameters(raw, num_mixtures)
  lower = tf.convert_to_tensor(lower, tf.int32)
  upper = tf.convert_to_tensor(upper, tf.int32)
  # The K + 1 bin edges; the outer two stand for -inf and +inf below.
  table = tf.constant(np.concatenate([[0.0], edges(k), [0.0]]), tf.float32)
  inverse_scale = tf.exp(-log_scales)
  low = (tf.gather(table, lower)[..., None] - means) * inverse_scale  # [..., M]
  high = (tf.gather(table, upper)[..., None] - means) * inverse_scale
  low = tf.where((lower == 0)[..., None], -_FAR, low)
  high = tf.where((upper == k)[..., None], _FAR, high)
  return tf.reduce_logsumexp(tf.nn.log_softmax(logits) + _log_bin_mass(low, high),
                             axis=-1)


def _log_bin_mass(lower, upper):
  """log(sigma(upper) - sigma(lower)) for standardised bin ends lower < upper,
  as -softplus(-upper) - softplus(lower) + log(-expm1(lower - upper))."""
  return (-tf.nn.softplus(-upper) - tf.nn.softplus(lower) +
          tf.math.log(-tf.math.expm1(lower - upper)))


class LogisticMixture(tf.keras.layers.Layer):
  """A network with 3M outputs per position seen as K-class log-probabilities.

  Call: the wrapped network's (x_in int32 [B, *shape], t int32 [B], mask
  [B, *shape, M'], training) -> log-probabilities float32 [B, *shape, K]
  (`log_probs` of its float32 [B, *shape, 3M] output), in every precision.
  """

  def __init__(self, network, num_classes, num_mixtures, **kwargs):
    super().__init__(**kwargs)
    self.network = network
    self.num_classes, self.num_mixtures = int(num_classes), int(num_mixtures)

  def call(self, x_in, t, mask, training=False):
    return log_probs(self.parameters(x_in, t, mask, training), self.num_classes,
                     self.num_mixtures)

  def parameters(self, x_in, t, mask, training=False):
    """The wrapped network's raw parameters float32 [B, *shape, 3M]."""
    return tf.cast(self.network(x_in, t, mask, training=training), tf.float32)

  def range_log_prob(self, raw, lower, upper):
    """`range_log_prob` of this mixture: log P(lower <= class < upper)
    float32 [B, *shape] for raw parameters [B, *shape, 3M] (`parameters`)."""
    return range_log_prob(raw, lower, upper, self.num_classes, self.num_mixtures)
