"""The order-agnostic ARDM (spec §3): objective, training and likelihoods.

`OAARDM` is a Keras model that owns a training network and its EMA copy. The
EMA network is used for evaluation, sampling, likelihoods and export.

Units: every likelihood is in bits per dimension (bits/dim) unless a name
says bits; ELBO values are <= 0 and losses are their negation.
"""
import math

import tensorflow as tf

from tf_ardm.generation import distributions
from tf_ardm import errors
from tf_ardm.generation import masks
from tf_ardm.generation import sampling
from tf_ardm.models.loss_tracker import LossTracker
from tf_ardm import networks
from tf_ardm.networks import fixed_point
from tf_ardm.networks import logistic_mixture

LN2 = math.log(2.0)


def _replica_local_creator(next_creator, **kwargs):
  """Variables whose replicas all receive the same update (EMA weights)."""
  kwargs.update(trainable=False,
                synchronization=tf.VariableSynchronization.ON_WRITE,
                aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
  return next_creator(**kwargs)


class Denoiser(tf.Module):
  """One network seen as an ARDM: logits, the ELBO and exact likelihoods.

  The ARDM has S stages of D steps each (S = 1 for OA; see
  tf_ardm.models.upscale). A stage turns x_past into x_future, one OA-ARDM
  over the D positions: for OA, x_past is the absorbing state and
  x_future = x. The stage hooks (`stage_inputs`, `stage_logits`, `target`,
  `value`, `conditioning`, and the codec's `num_choices`, `choice_frequencies`,
  `choice`, `chosen_value`) are where an Upscale denoiser differs; every
  `stage` argument is int32 [B] (zeros when None).

  Attributes:
    config: the ModelConfig.
    network: a Keras layer (x_in, t, mask) -> logits [B, *shape, K].
    num_steps: D, steps per stage.
    num_stages: S.
  """

  def __init__(self, config, network, name=None):
    super().__init__(name=name)
    self.config, self.network = config, network
    self.num_steps = config.num_steps
    self.num_stages = config.num_stages

  def conditioning(self, t, known, stage):
    """The network's time and mask inputs: OA gives t and the known mask."""
    del stage
    return t, known

  def stage_inputs(self, x, stage):
    """(x_future, x_past) int32 [B, *shape]: OA predicts x from absorbing."""
    del stage
    return x, tf.fill(tf.shape(x), self.config.absorbing)

  def stage_logits(self, logits, x_past, stage):
    """Logits [B, *shape, n] of the stage's output classes (OA: the network's)."""
    del x_past, stage
    return logits

  def mixture_ranges(self, x_future, x_past, stage):
    """Where the network is a `LogisticMixture`: the class ranges whose masses
    give the stage's log p(x_future) as log P(numerator) - log P(denominator).

    Returns ((lower, upper), denominator): int32 [B, *shape] each, the data
    classes lower .. upper - 1; denominator is another such pair, or None
    for 1. OA: the target's own class, [x, x + 1). None: the stage
    distribution needs the full [..., K] table (`stage_logits`).
    """
    del x_past
    if not isinstance(self.network, logistic_mixture.LogisticMixture):
      return None
    target = self.target(x_future, stage)
    return (target, target + 1), None

  def target(self, x_future, stage):
    """The class index of x_future among the stage's output classes."""
    del stage
    return x_future

  def value(self, draw, x_past, stage):
    """The new value of a position whose stage output class is `draw`."""
    del x_past, stage
    return draw

  @property
  def num_choices(self):
    """A, the symbols the lossless codec codes a position with (OA: the K classes)."""
    return self.config.num_classes

  def choice_frequencies(self, logits, x_past, stage, softmax):
    """The integer codec's frequencies int64 [B, *shape, A] >= 1 of every choice.

    logits: int64 [B, *shape, K] of an integer network (at
    fixed_point.TABLE_EXPONENT); softmax: int64 logits [..., n] -> weights
    (fixed_point.softmax_weights). OA: the weights of the K classes with
    fixed_point.frequencies' floor. Exact integer arithmetic throughout.
    """
    del x_past, stage
    return fixed_point.frequencies(softmax(logits))

  def choice(self, x_future, x_past, stage):
    """The symbol int32 [B, *shape] in [0, A) that the codec codes for x_future."""
    del x_past, stage
    return x_future

  def chosen_value(self, choice, x_past, stage):
    """The value int32 [B, *shape] of a decoded symbol `choice` (inverse of `choice`)."""
    del x_past, stage
    return choice

  def stage_ids(self, stage, batch):
    """stage as int32 [B] (zeros when None)."""
    return tf.zeros([batch], tf.int32) if stage is None else tf.convert_to_tensor(
        stage, tf.int32) + tf.zeros([batch], tf.int32)

  def logits(self, x_in, t, known, stage=None, training=False):
    """Network logits float32 [B, *shape, n] for input x_in int32 [B, *shape].

    t: int32 [B] known variables in the stage; known: int [B, D] or
    [B, *shape]; stage: int32 [B].
    """
    t, mask = self._network_inputs(x_in, t, known, stage)
    return tf.cast(self.network(x_in, t, mask, training=training), tf.float32)

  def _network_inputs(self, x_in, t, known, stage):
    """The network's (time, mask) for x_in: `conditioning` of t and the
    float32 known mask in x_in's shape."""
    known = tf.cast(tf.reshape(known, tf.shape(x_in)), tf.float32)
    return self.conditioning(t, known, self.stage_ids(stage, tf.shape(x_in)[0]))

  def stage_log_prob(self, x, sigma, left, stage, training=False):
    """log p(x_future | known) in nats at every position, float32 [B, D].

    The known positions (sigma < left) hold x_future, the others x_past.
    """
    return self.known_log_prob(x, masks.known_mask(sigma, left), left, stage, training)

  def known_log_prob(self, x, known, t, stage=None, training=False):
    """log p(x_future | x_future at `known`) in nats at every position, [B, D].

    One network call. known: int [B, D] or [B, *shape], 1 where given;
    t: int32 [B] number of known positions (the network's time input).
    """
    batch = tf.shape(x)[0]
    stage = self.stage_ids(stage, batch)
    x_future, x_past = self.stage_inputs(x, stage)
    known = tf.reshape(known, tf.shape(x))
    x_in = masks.corrupt(x_future, known, x_past)
    ranges = self.mixture_ranges(x_future, x_past, stage)
    if ranges is not None:
      # Only the target's probability: O(M), not O(M K), per position.
      t, mask = self._network_inputs(x_in, t, known, stage)
      raw = self.network.parameters(x_in, t, mask, training=training)
      (lower, upper), denominator = ranges
      logp = self.network.range_log_prob(raw, lower, upper)
      if denominator is not None:
        logp -= self.network.range_log_prob(raw, *denominator)
    else:
      logits = self.stage_logits(self.logits(x_in, t, known, stage, training), x_past, stage)
      logp = distributions.log_prob(logits, self.target(x_future, stage))
    return tf.reshape(logp, [batch, -1])

  def unknown_log_prob(self, x, known, t, training=False):
    """sum_{i unknown} log p(x_i | x_known) in nats, float32 [B] (OA models).

    Args:
      x: int32 [B, *shape] data.
      known: int [B, D] or [B, *shape], 1 where x is given.
      t: int32 [B] number of known positions (the network's time input).
    """
    batch = tf.shape(x)[0]
    logp = self.known_log_prob(x, known, t, training=training)
    unknown = tf.reshape(tf.cast(1 - tf.reshape(known, tf.shape(x)), tf.float32),
                         [batch, -1])
    return tf.reduce_sum(unknown * logp, axis=1)

  def elbo_terms(self, x, sigma, t, training=False):
    """The single-step ELBO estimator of spec §3.1 (§6.4) for given sigma and t.

    Args:
      x: int32 [B, *shape] data.
      sigma: int32 [B, D] orders (step at which each position is generated).
      t: int32 [B] global step in [0, S*D): stage t // D, t mod D known
        variables within the stage.

    Returns:
      dict of float32 [B] in bits/dim: 'elbo' (unbiased log p(x) bound),
      'elbo_per_t' (the step's loss component, negated) and 'nce' (the
      unweighted cross-entropy term).
    """
    d = self.num_steps
    stage, t_in = t // d, t % d
    logp = self.stage_log_prob(x, sigma, t_in, stage, training)
    unknown = tf.cast(sigma >= t_in[:, None], tf.float32)
    total = tf.reduce_sum(unknown * logp, axis=1)
    elbo_per_t = total / (float(d) - tf.cast(t_in, tf.float32)) / d / LN2
    return {"elbo": elbo_per_t * float(d * self.num_stages),
            "elbo_per_t": elbo_per_t, "nce": total / d / LN2}

  def elbo_with_policy(self, x, sigma, policy, index, stage=None):
    """Unbiased ELBO of the parallel model with `policy` (spec §3.5, §6.6), bits/dim [B].

    For a uniform policy index j per example (and a uniform stage), the
    one-step estimate at t = pi[j] is weighted by (pi[j+1] - pi[j]) * k * S,
    so that its expectation is the sum over stages of
    sum_j (pi[j+1] - pi[j]) * l(pi[j]), the DP cost of the policies.

    Args:
      x: int32 [B, *shape]; sigma: int32 [B, D]; policy: int32 [k] or [B, k]
      (the policy of each example's stage); index: int32 [B] policy indices
      j in [0, k); stage: int32 [B].
    """
    batch = tf.shape(x)[0]
    ext = sampling.extend_policy(policy, batch, self.num_steps)
    k = tf.cast(tf.shape(ext)[1] - 1, tf.float32)
    left = tf.gather(ext, index, batch_dims=1)
    right = tf.gather(ext, index + 1, batch_dims=1)
    t = self.stage_ids(stage, batch) * self.num_steps + left
    per_t = self.elbo_terms(x, sigma, t)["elbo_per_t"]
    return per_t * tf.cast(right - left, tf.float32) * k * float(self.num_stages)

  def log_prob_bits(self, x, sigma, policy, stage=None):
    """Exact code length -log2 p(x_future | x_past, sigma, policy) in bits, [B].

    For OA (x_future = x) with policy arange(D) this is the exact NLL under
    the fixed order sigma (D network calls); with a shorter policy it is the
    parallel model's likelihood, the length an ideal entropy coder achieves
    (spec §3.5). For Upscale it is one stage's share.

    Args:
      x: int32 [B, *shape]; sigma: int32 [B, D]; policy: int32 [k] or [B, k];
      stage: int32 [B].
    """
    batch = tf.shape(x)[0]
    ext = sampling.extend_policy(policy, batch, self.num_steps)
    total = tf.zeros([batch])
    for j in tf.range(tf.shape(ext)[1] - 1):
      left, right = ext[:, j], ext[:, j + 1]
      logp = self.stage_log_prob(x, sigma, left, stage)
      current = tf.cast(masks.current_mask(sigma, left, right), tf.float32)
      total += tf.reduce_sum(current * logp, axis=1)
    return -total / LN2


class OAARDM(tf.keras.Model):
  """Order-agnostic ARDM over data int32 [B, *shape] with values in [0, K).

  Training draws a global step t uniformly from [0, S*D) (S = 1 here; the
  Upscale subclass has S stages) and the loss tracker keeps S*D components.
  Subclasses train the same networks with another objective (OBJECTIVE, the
  config's `objective`) by overriding `training_terms` and `evaluation_terms`.

  `precision` (a key of `networks.precision.PRECISIONS`) is what the
  training network computes in. The EMA network, which evaluation, sampling
  and the exports use, computes in float32, and so do the logits, the loss
  and every variable. A float16 model's optimizer must be a Keras
  LossScaleOptimizer (`tf_ardm.training.optimizers.build` makes one).
  """

  denoiser_class = Denoiser
  OBJECTIVE = "ardm"

  def __init__(self, config, ema_decay=0.9999, seed=0, precision="float32", **kwargs):
    errors.check(config.objective == self.OBJECTIVE,
                 "a model config with objective %r does not fit %s, which trains "
                 "the %r objective", config.objective, type(self).__name__,
                 self.OBJECTIVE)
    super().__init__(**kwargs)
    self.config = config
    self.ema_decay = ema_decay
    self.num_steps = config.num_steps
    self.total_steps = config.total_steps
    self.precision = precision
    self.network = networks.build(config, name="network", precision=precision)
    with tf.variable_creator_scope(_replica_local_creator):
      self.ema_network = networks.build(config, name="ema_network")
    self.train_denoiser = self.denoiser_class(config, self.network)
    self.ema = self.denoiser_class(config, self.ema_network)
    self.loss_tracker = LossTracker(self.total_steps, config.num_classes)
    self.seed = seed
    self.rng = tf.random.Generator.from_seed(seed)  # Evaluation orders and times.
    self.heldout_loss_components = None  # float32 [D] from evaluate, if any.
    self.trained_steps = None  # Optimizer steps of a restored model, if known.
    self.bpd_metric = tf.keras.metrics.Mean("bpd")
    self.nce_metric = tf.keras.metrics.Mean("nce_bpd")
    self.loss_metric = tf.keras.metrics.Mean("loss")
    x = tf.zeros([1, *config.shape], tf.int32)
    t = tf.zeros([1], tf.int32)
    for denoiser in (self.train_denoiser, self.ema):
      denoiser.logits(x, t, x)
    for ema, var in zip(self.ema_network.weights, self.network.weights):
      ema.assign(var)

  @property
  def metrics(self):
    return [self.loss_metric, self.bpd_metric, self.nce_metric]

  def sample_order_and_time(self, batch):
    """Uniform sigma int32 [B, D] and global t int32 [B] in [0, S*D) from the
    model's RNG (evaluation)."""
    sigma = masks.sample_sigma(batch, self.num_steps, seed=self.rng.make_seeds(1)[:, 0])
    t = self.rng.uniform([batch], 0, self.total_steps, dtype=tf.int32)
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
    """sigma int32 [B, D] and global t int32 [B] for this replica's part of a step."""
    def draw(n, seed):
      seeds = tf.random.experimental.stateless_split(seed, 2)
      t = tf.random.stateless_uniform([n], seeds[1], 0, self.total_steps, dtype=tf.int32)
      return masks.sample_sigma(n, self.num_steps, seed=seeds[0]), t
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
      scaled = isinstance(self.optimizer, tf.keras.mixed_precision.LossScaleOptimizer)
      if scaled:  # float16: scaled so that small gradients do not flush to zero.
        loss = self.optimizer.get_scaled_loss(loss)
    variables = self.network.trainable_variables
    grads = tape.gradient(loss, variables)
    if scaled:
      grads = self.optimizer.get_unscaled_gradients(grads)
    self.optimizer.apply_gradients(zip(grads, variables))
    self._update_ema()
    self.loss_tracker.update(terms["t"], -terms["elbo_per_t"], terms["observed"])
    self.loss_metric.update_state(per_example)
    self.bpd_metric.update_state(-terms["elbo"])
    self.nce_metric.update_state(-terms["nce"])
    return {m.name: m.result() for m in self.metrics}

  def _update_ema(self):
    rate = 1.0 - self.ema_decay  # ema <- decay * ema + (1 - decay) * var.
    for ema, var in zip(self.ema_network.weights, self.network.weights):
      ema.assign_sub(rate * (ema - tf.cast(var, ema.dtype)))

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
