"""T-step absorbing discrete diffusion (D3PM-absorbing) with an ARDM network.

Forward process: at step t in 0..T every position of x_0 is replaced by the
absorbing state independently with probability t/T, so x_T is all absorbed.
The x0-parameterised reverse process unmasks every absorbed position of x_t
with probability 1/t and draws its value from the network's prediction of
x_0. Equivalently, each position has a masking time tau uniform in {1..T}: it
is absorbed in x_t iff tau <= t, and the reverse process unmasks it at step
tau.

The network is the ARDM's, (x_in, t_in, known) -> logits of x_0, with t_in
the number of known positions, so both models use the same networks.

ELBO (the KL term of step t is -(1/t) times the absorbed positions'
log-likelihood; the prior term is 0):
  log p(x) >= sum_{t=1..T} E_{x_t}[(1/t) sum_{i absorbed} log p(x_i | x_t)],
estimated without bias from one network call by t ~ U{1..T} with weight T/t.
With m absorbed positions a step weighs w_T(m) = sum_t (1/t) Bin(m; D, t/T),
which tends to the ARDM's 1/m (spec §3.1) as T grows: the ARDM is the
T -> infinity limit.

Network calls: a step that unmasks nothing leaves x_t unchanged and costs no
call, so a datapoint takes one call per distinct masking time, on average
T (1 - (1 - 1/T)^D) <= min(T, D).

Units: ELBO values are in bits/dim (<= 0); losses are their negation.
"""
import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from tf_ardm import config as config_lib
from tf_ardm.generation import masks
from tf_ardm.generation import sampling
from tf_ardm.models.ardm import LN2
from tf_ardm.models.ardm import OAARDM


def masking_times(batch, num_steps, diffusion_steps, seed):
  """tau int32 [B, D], uniform in {1..T}; seed: stateless seed [2]."""
  return tf.random.stateless_uniform(tf.stack([batch, num_steps]), seed, 1,
                                     diffusion_steps + 1, tf.int32)


def draw(batch, num_steps, diffusion_steps, seed):
  """A step t int32 [B] uniform in {1..T} and x_t's absorbed positions int32 [B, D]."""
  seeds = tf.random.experimental.stateless_split(seed, 2)
  t = tf.random.stateless_uniform([batch], seeds[0], 1, diffusion_steps + 1, tf.int32)
  tau = masking_times(batch, num_steps, diffusion_steps, seeds[1])
  return t, tf.cast(tau <= t[:, None], tf.int32)


def elbo_terms(denoiser, x, t, absorbed, diffusion_steps, training=False):
  """The single-step estimator of the T-step ELBO at steps t (one network call).

  Args:
    denoiser: an ARDM `Denoiser`.
    x: int32 [B, *shape] data.
    t: int32 [B] diffusion steps in {1..T}.
    absorbed: int32 [B, D], 1 where x_t holds the absorbing state.
    diffusion_steps: T, an int32 scalar.
    training: the network's training flag.

  Returns:
    dict of [B] tensors: 'elbo' (T/t times the absorbed positions'
    log-likelihood, bits/dim: unbiased for the T-step ELBO), 'nce' (that
    log-likelihood unweighted), and the same call seen as an ARDM step for
    the loss tracker: 't' int32 (number of known positions), 'elbo_per_t'
    (its loss component, negated) and 'observed' bool (something absorbed).
  """
  d = denoiser.num_steps
  known = 1 - absorbed
  num_known = tf.reduce_sum(known, axis=1)
  total = denoiser.unknown_log_prob(x, known, num_known, training) / d / LN2
  weight = tf.cast(diffusion_steps, tf.float32) / tf.cast(t, tf.float32)
  num_absorbed = d - num_known
  return {"elbo": weight * total, "nce": total, "t": num_known,
          "elbo_per_t": total / tf.cast(tf.maximum(num_absorbed, 1), tf.float32),
          "observed": num_absorbed > 0}


def check_steps(diffusion_steps):
  """T as an int32 scalar, asserted >= 1 (a UserError for a Python int)."""
  if isinstance(diffusion_steps, (int, np.integer)):
    config_lib.check_diffusion_steps(int(diffusion_steps))
  diffusion_steps = tf.convert_to_tensor(diffusion_steps, tf.int32)
  assertion = tf.debugging.assert_greater_equal(
      diffusion_steps, 1, message="the number of diffusion steps T must be >= 1")
  with tf.control_dependencies([assertion]):
    return tf.identity(diffusion_steps)


def elbo(denoiser, x, diffusion_steps, seed):
  """One-call estimate of the T-step ELBO, bits/dim float32 [B] (<= 0).

  Args:
    denoiser: an ARDM `Denoiser`; x: int32 [B, *shape];
    diffusion_steps: T >= 1, int32 scalar; seed: stateless seed int32 [2].
  """
  diffusion_steps = check_steps(diffusion_steps)
  t, absorbed = draw(tf.shape(x)[0], denoiser.num_steps, diffusion_steps, seed)
  return elbo_terms(denoiser, x, t, absorbed, diffusion_steps)["elbo"]


def generation_order(tau, seed):
  """The reverse process of masking times tau as an ARDM order and policy.

  Positions are generated in decreasing tau, ties in random order, and all
  positions of one tau in one step (spec §4.2).

  Args:
    tau: int32 [B, D] masking times.
    seed: stateless seed int32 [2] of the order within a step.

  Returns:
    sigma int32 [B, D]; policy int32 [B, k], each row the left boundaries of
    its steps padded with D (k: the most steps in the batch); calls int32
    [B], the number of steps (distinct masking times) of each row.
  """
  shape = tf.shape(tau)
  batch, num_steps = shape[0], shape[1]
  shuffle = masks.sample_sigma(batch, num_steps, seed)  # A uniform permutation.
  by_time = tf.argsort(-tf.gather(tau, shuffle, batch_dims=1), axis=-1, stable=True)
  order = tf.gather(shuffle, by_time, batch_dims=1)  # Position of each rank.
  sigma = tf.argsort(order, axis=-1)
  ranked = tf.gather(tau, order, batch_dims=1)
  starts = tf.concat([tf.ones([batch, 1], tf.int32),
                      tf.cast(ranked[:, 1:] != ranked[:, :-1], tf.int32)], axis=1)
  step = tf.cumsum(starts, axis=1) - 1
  calls = step[:, -1] + 1
  rows = tf.broadcast_to(tf.range(batch)[:, None], shape)
  ranks = tf.broadcast_to(tf.range(num_steps)[None], shape)
  # The left boundary of a step is the smallest rank in it.
  policy = tf.tensor_scatter_nd_min(tf.fill(shape, num_steps),
                                    tf.stack([rows, step], axis=-1), ranks)
  return sigma, policy[:, :tf.reduce_max(calls)], calls


def sample(denoiser, num, diffusion_steps, seed):
  """T-step absorbing-diffusion samples.

  Args:
    denoiser: an ARDM `Denoiser`; num: number of samples;
    diffusion_steps: T >= 1, int32 scalar; seed: stateless seed int32 [2].

  Returns:
    samples int32 [num, *shape] and calls int32 [num], the network calls of
    each sample (its steps that unmask something).
  """
  diffusion_steps = check_steps(diffusion_steps)
  seeds = tf.random.experimental.stateless_split(seed, 3)
  tau = masking_times(num, denoiser.num_steps, diffusion_steps, seeds[0])
  sigma, policy, calls = generation_order(tau, seeds[1])
  x = tf.fill(tf.concat([[num], denoiser.config.shape], 0), denoiser.config.absorbing)
  return sampling.sample_with_policy(denoiser, x, sigma, policy, seeds[2]), calls


def expected_calls(num_steps, diffusion_steps):
  """Expected network calls of one T-step sample of D positions: T (1 - (1 - 1/T)^D)."""
  config_lib.check_diffusion_steps(diffusion_steps)
  return diffusion_steps * (1.0 - (1.0 - 1.0 / diffusion_steps) ** num_steps)


def expected_loss(loss_components, diffusion_steps):
  """The T-step negative ELBO (bits/dim) from the ARDM's per-step losses.

  Given m absorbed positions, the absorbed set of x_t is uniform, exactly as
  the unknown set of ARDM step D - m, so the T-step loss is
  sum_m w_T(m) m l[D - m] with w_T(m) = sum_t (1/t) Bin(m; D, t/T);
  the ARDM's own loss sum_t l[t] has w(m) = 1/m.

  Args:
    loss_components: float [D], l[t] the expected loss component of ARDM
      step t (t known positions), bits/dim.
    diffusion_steps: T >= 1.
  """
  config_lib.check_diffusion_steps(diffusion_steps)
  losses = np.asarray(loss_components, np.float64)
  d = len(losses)
  m = np.arange(1, d + 1)[:, None]
  t = np.arange(1, diffusion_steps + 1)[None, :]
  binomial = tfp.distributions.Binomial(total_count=np.float64(d),
                                        probs=t / diffusion_steps)
  weights = (binomial.prob(m.astype(np.float64)).numpy() / t).sum(axis=1)
  return float(np.sum(weights * m[:, 0] * losses[::-1]))


class AbsorbingDiffusion(OAARDM):
  """The ARDM's networks trained as T-step absorbing diffusion.

  T is `config.diffusion_steps`. The loss tracker still records ARDM per-step
  losses (every call with something absorbed is an ARDM step with a uniform
  unknown set), so DP policies work for this model too.
  """

  OBJECTIVE = "absorbing"

  def __init__(self, config, **kwargs):
    super().__init__(config, **kwargs)
    self.diffusion_steps = config.diffusion_steps

  def training_terms(self, x, step):
    t, absorbed = self.replica_draws(
        tf.shape(x)[0], step,
        lambda n, seed: draw(n, self.num_steps, self.diffusion_steps, seed))
    terms = elbo_terms(self.train_denoiser, x, t, absorbed, self.diffusion_steps,
                       training=True)
    return -terms["elbo"] - self.config.ce_weight * terms["nce"], terms

  def evaluation_terms(self, x):
    t, absorbed = draw(tf.shape(x)[0], self.num_steps, self.diffusion_steps,
                       self.rng.make_seeds(1)[:, 0])
    return elbo_terms(self.ema, x, t, absorbed, self.diffusion_steps)
