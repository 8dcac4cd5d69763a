"""The order-agnostic ARDM (spec §3): objective, training and likelihoods.

`OAARDM` is a Keras model that owns a training network and its EMA copy. The
EMA network is used for evaluation, sampling, likelihoods and export.

Units: every likelihood is in bits per dimension (bits/dim) unless a name
says bits; ELBO values are <= 0 and losses are their negation.
"""
import math

import tensorflow as tf

from tf_ardm import distributions
from tf_ardm import errors
from tf_ardm import masks
from tf_ardm import sampling
from tf_ardm.models.loss_tracker import LossTracker
from tf_ardm.networks.transformer import Transformer
from tf_ardm.networks.unet import UNet

LN2 = math.log(2.0)


def build_network(config, name=None):
  """Builds the network named by `config.network` (a Keras layer)."""
  if config.network == "unet":
    return UNet(config.shape, config.input_classes, config.num_classes,
                max_time=config.num_steps, name=name, **config.network_kwargs)
  if config.network == "transformer":
    return Transformer(config.shape[0], config.input_classes,
                       config.num_classes, name=name, **config.network_kwargs)
  raise ValueError(f"unknown network {config.network!r}")


def _replica_local_creator(next_creator, **kwargs):
  """Variables whose replicas all receive the same update (EMA weights)."""
  kwargs.update(trainable=False,
                synchronization=tf.VariableSynchronization.ON_WRITE,
                aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
  return next_creator(**kwargs)


class Denoiser(tf.Module):
  """One network seen as an ARDM: logits, the ELBO and exact likelihoods.

  Attributes:
    config: the ModelConfig.
    network: a Keras layer (x_in, t, mask) -> logits [B, *shape, K].
    num_steps: D.
  """

  def __init__(self, config, network, name=None):
    super().__init__(name=name)
    self.config, self.network = config, network
    self.num_steps = config.num_steps

  def logits(self, x_in, t, known, training=False):
    """Logits float32 [B, *shape, K] for corrupted input x_in int32 [B, *shape].

    t: int32 [B] number of known variables; known: int [B, D] or [B, *shape].
    """
    known = tf.reshape(known, tf.shape(x_in))
    return tf.cast(self.network(x_in, t, tf.cast(known, tf.float32),
                                training=training), tf.float32)

  def unknown_log_prob(self, x, known, t, training=False):
    """sum_{i unknown} log p(x_i | x_known) in nats, float32 [B].

    One network call on x with the unknown positions absorbed.

    Args:
      x: int32 [B, *shape] data.
      known: int [B, D] or [B, *shape], 1 where x is given.
      t: int32 [B] number of known positions (the network's time input).
    """
    batch = tf.shape(x)[0]
    known = tf.reshape(known, tf.shape(x))
    x_in = masks.corrupt(x, known, self.config.absorbing)
    logp = distributions.log_prob(self.logits(x_in, t, known, training), x)
    unknown = tf.reshape(tf.cast(1 - known, tf.float32), [batch, -1])
    return tf.reduce_sum(unknown * tf.reshape(logp, [batch, -1]), axis=1)

  def elbo_terms(self, x, sigma, t, training=False):
    """The single-step ELBO estimator of spec §3.1 for given sigma and t.

    Args:
      x: int32 [B, *shape] data.
      sigma: int32 [B, D] orders (step at which each position is generated).
      t: int32 [B] number of known variables, in [0, D).

    Returns:
      dict of float32 [B] in bits/dim: 'elbo' (unbiased log p(x) bound),
      'elbo_per_t' (the step's loss component, negated) and 'nce' (the
      unweighted cross-entropy term).
    """
    total = self.unknown_log_prob(x, masks.known_mask(sigma, t), t, training)
    d = float(self.num_steps)
    elbo_per_t = total / (d - tf.cast(t, tf.float32)) / d / LN2
    return {"elbo": elbo_per_t * d, "elbo_per_t": elbo_per_t,
            "nce": total / d / LN2}

  def elbo_with_policy(self, x, sigma, policy, index):
    """Unbiased ELBO of the parallel model with `policy` (spec §3.5), bits/dim [B].

    For a uniform policy index j per example, the one-step estimate at
    t = pi[j] is weighted by (pi[j+1] - pi[j]) * k, so that its expectation
    is sum_j (pi[j+1] - pi[j]) * l(pi[j]), the DP cost of the policy.

    Args:
      x: int32 [B, *shape]; sigma: int32 [B, D]; policy: int32 [k] or [B, k];
      index: int32 [B] policy indices j in [0, k).
    """
    batch = tf.shape(x)[0]
    ext = sampling.extend_policy(policy, batch, self.num_steps)
    k = tf.cast(tf.shape(ext)[1] - 1, tf.float32)
    left = tf.gather(ext, index, batch_dims=1)
    right = tf.gather(ext, index + 1, batch_dims=1)
    per_t = self.elbo_terms(x, sigma, left)["elbo_per_t"]
    return per_t * tf.cast(right - left, tf.float32) * k

  def log_prob_bits(self, x, sigma, policy):
    """Exact code length -log2 p(x | sigma, policy) in bits, float32 [B].

    With policy arange(D) this is the exact NLL under the fixed order sigma
    (D network calls); with a shorter policy it is the parallel model's
    likelihood, the length an ideal entropy coder achieves (spec §3.5).

    Args:
      x: int32 [B, *shape]; sigma: int32 [B, D]; policy: int32 [k] or [B, k].
    """
    batch = tf.shape(x)[0]
    ext = sampling.extend_policy(policy, batch, self.num_steps)
    total = tf.zeros([batch])
    for j in tf.range(tf.shape(ext)[1] - 1):
      left, right = ext[:, j], ext[:, j + 1]
      known = tf.reshape(masks.known_mask(sigma, left), tf.shape(x))
      logits = self.logits(masks.corrupt(x, known, self.config.absorbing),
                           left, known)
      logp = tf.reshape(distributions.log_prob(logits, x), [batch, -1])
      current = tf.cast(masks.current_mask(sigma, left, right), tf.float32)
      total += tf.reduce_sum(current * logp, axis=1)
    return -total / LN2


class OAARDM(tf.keras.Model):
  """Order-agnostic ARDM over data int32 [B, *shape] with values in [0, K).

  Subclasses train the same networks with another objective (OBJECTIVE, the
  config's `objective`) by overriding `training_terms` and `evaluation_terms`.
  """

  OBJECTIVE = "ardm"

  def __init__(self, config, ema_decay=0.9999, seed=0, **kwargs):
    errors.check(config.objective == self.OBJECTIVE,
                 "a model config with objective %r does not fit %s, which trains "
                 "the %r objective", config.objective, type(self).__name__,
                 self.OBJECTIVE)
    super().__init__(**kwargs)
    self.config = config
    self.ema_decay = ema_decay
    self.num_steps = config.num_steps
    self.network = build_network(config, name="network")
    with tf.variable_creator_scope(_replica_local_creator):
      self.ema_network = build_network(config, name="ema_network")
    self.train_denoiser = Denoiser(config, self.network)
    self.ema = Denoiser(config, self.ema_network)
    self.loss_tracker = LossTracker(self.num_steps, config.num_classes)
    self.seed = seed
    self.rng = tf.random.Generator.from_seed(seed)  # Evaluation orders and times.
    self.heldout_loss_components = None  # float32 [D] from evaluate, if any.
    self.trained_steps = None  # Optimizer steps of a restored model, if known.
    self.bpd_metric = tf.keras.metrics.Mean("bpd")
    self.nce_metric = tf.keras.metrics.Mean("nce_bpd")
    self.loss_metric = tf.keras.metrics.Mean("loss")
    x = tf.zeros([1, *config.shape], tf.int32)
    t = tf.zeros([1], tf.int32)
    for net in (self.network, self.ema_network):
      net(x, t, tf.zeros([1, *config.shape]))
    for ema, var in zip(self.ema_network.weights, self.network.weights):
      ema.assign(var)

  @property
  def metrics(self):
    return [self.loss_metric, self.bpd_metric, self.nce_metric]

  def sample_order_and_time(self, batch):
    """Uniform sigma int32 [B, D] and t int32 [B] from the model's RNG (evaluation)."""
    sigma = tf.argsort(self.rng.uniform([batch, self.num_steps]), axis=-1)
    t = self.rng.uniform([batch], 0, self.num_steps, dtype=tf.int32)
    return sigma, t

  def replica_draws(self, batch, step, draw):
    """This replica's rows of `draw(global_batch, seed)` for a training step.

    Training draws are a stateless function of (seed, step), made for the
    whole global batch, each replica taking its own slice: training is
    reproducible, and any number of replicas or workers sees exactly the
    draws of a single device running the same global batch.

    Args:
      batch: this replica's batch size B.
      step: the optimizer step.
      draw: (n, seed int64 [2]) -> a structure of tensors with n rows.
    """
    ctx = tf.distribute.get_replica_context()
    replicas = ctx.num_replicas_in_sync if ctx is not None else 1
    replica = tf.cast(ctx.replica_id_in_sync_group if ctx is not None else 0, tf.int32)
    seed = tf.stack([tf.constant(self.seed, tf.int64), tf.cast(step, tf.int64)])
    rows = tf.range(batch) + replica * batch
    return tf.nest.map_structure(lambda v: tf.gather(v, rows),
                                 draw(batch * replicas, seed))

  def training_order_and_time(self, batch, step):
    """sigma int32 [B, D] and t int32 [B] for this replica's part of a step."""
    def draw(n, seed):
      seeds = tf.random.experimental.stateless_split(seed, 2)
      noise = tf.random.stateless_uniform([n, self.num_steps], seeds[0])
      t = tf.random.stateless_uniform([n], seeds[1], 0, self.num_steps, dtype=tf.int32)
      return tf.argsort(noise, axis=-1), t
    return self.replica_draws(batch, step, draw)

  def per_example_loss(self, x, sigma, t):
    """Training loss [B]: -elbo - ce_weight * nce (bits/dim), and the terms."""
    terms = self.train_denoiser.elbo_terms(x, sigma, t, training=True)
    return -terms["elbo"] - self.config.ce_weight * terms["nce"], terms

  def training_terms(self, x, step):
    """The objective on a training batch at optimizer step `step`.

    Returns:
      (loss float32 [B], terms): terms holds 'elbo' and 'nce' (bits/dim
      [B]) and the loss tracker's observations 't' int32 [B] (number of known
      positions), 'elbo_per_t' float32 [B] and 'observed' bool [B].
    """
    sigma, t = self.training_order_and_time(tf.shape(x)[0], step)
    loss, terms = self.per_example_loss(x, sigma, t)
    return loss, dict(terms, t=t, observed=tf.ones_like(t, tf.bool))

  def evaluation_terms(self, x):
    """'elbo' and 'nce' (bits/dim [B]) of the EMA network with the model's RNG."""
    sigma, t = self.sample_order_and_time(tf.shape(x)[0])
    return self.ema.elbo_terms(x, sigma, t)

  def train_step(self, data):
    x = data
    with tf.GradientTape() as tape:
      per_example, terms = self.training_terms(x, self.optimizer.iterations)
      loss = tf.nn.compute_average_loss(per_example)
    variables = self.network.trainable_variables
    grads = tape.gradient(loss, variables)
    self.optimizer.apply_gradients(zip(grads, variables))
    self._update_ema()
    self.loss_tracker.update(terms["t"], -terms["elbo_per_t"], terms["observed"])
    self.loss_metric.update_state(per_example)
    self.bpd_metric.update_state(-terms["elbo"])
    self.nce_metric.update_state(-terms["nce"])
    return {m.name: m.result() for m in self.metrics}

  def _update_ema(self):
    decay = self.ema_decay
    for ema, var in zip(self.ema_network.weights, self.network.weights):
      ema.assign(decay * ema + (1.0 - decay) * tf.cast(var, ema.dtype))

  def test_step(self, data):
    terms = self.evaluation_terms(data)
    self.bpd_metric.update_state(-terms["elbo"])
    self.nce_metric.update_state(-terms["nce"])
    self.loss_metric.update_state(-terms["elbo"] - self.config.ce_weight * terms["nce"])
    return {m.name: m.result() for m in self.metrics}

  def call(self, x, training=False):
    """Negative ELBO estimate of the EMA network per example (bits/dim), float32 [B]."""
    del training  # Training goes through train_step.
    return -self.evaluation_terms(x)["elbo"]
