"""Categorical output distributions over K classes.

Logits are float32 `[..., K]`; log-probabilities use tfp's Categorical (a
float32 log-softmax). Sampling is exact: an inverse-CDF draw in float64, since
float32 Gumbel-max is known to bias samples.
"""
import tensorflow as tf
import tensorflow_probability as tfp

tfd = tfp.distributions

# Spec §5.2: the coder never sees a probability below EPSILON.
EPSILON = 2e-5


def log_prob(logits, x):
  """log p(x) in nats for int32 x [...] under float32 logits [..., K]."""
  return tfd.Categorical(logits=tf.cast(logits, tf.float32)).log_prob(x)


def sample(logits, seed):
  """Draws x ~ Categorical(logits) exactly, by inverse CDF in float64.

  Args:
    logits: float [..., K].
    seed: stateless seed, int32 [2].

  Returns:
    int32 [...], values in [0, K).
  """
  logits = tf.cast(logits, tf.float64)
  probs = tf.nn.softmax(logits - tf.reduce_max(logits, -1, keepdims=True))
  cdf = tf.math.cumsum(probs, axis=-1)
  u = tf.random.stateless_uniform(tf.shape(cdf)[:-1], seed=seed,
                                  dtype=tf.float64)[..., None]
  # The number of classes whose CDF lies at or below u*total is the sample.
  index = tf.reduce_sum(tf.cast(cdf <= u * cdf[..., -1:], tf.int32), -1)
  return tf.minimum(index, tf.shape(logits)[-1] - 1)


def safe_probs(logits, support=None):
  """(1 - eps*n) * softmax + eps in float32 (spec §5.2), [..., K].

  support: bool [..., K], the n classes that may occur; None: all K. Classes
  outside it get probability exactly 0 and take no part in the softmax.
  """
  logits = tf.cast(logits, tf.float32)
  if support is None:
    k = tf.cast(tf.shape(logits)[-1], tf.float32)
    return (1.0 - EPSILON * k) * tf.nn.softmax(logits) + EPSILON
  n = tf.reduce_sum(tf.cast(support, tf.float32), -1, keepdims=True)
  # The smallest float, not -inf: a row without support gives zeros, not NaN.
  probs = tf.nn.softmax(tf.where(support, logits, tf.float32.min))
  return tf.where(support, (1.0 - EPSILON * n) * probs + EPSILON, 0.0)
