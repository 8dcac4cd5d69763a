"""Upscale ARDMs (spec §6): S coarse-to-fine stages, each an OA-ARDM.

Stage s generates x_future = down^(S-1-s)(x) from x_past = down^(S-s)(x)
(tf_ardm.transitions). The network sees x_past with the known positions of
x_future written in, the known mask plus the one-hot stage as mask channels
(C + S of them) and the global step s*D + t as time. Training, policies,
sampling, the servable and the codec are the OA machinery with these stage
hooks.
"""
import numpy as np
import tensorflow as tf

from tf_ardm.models import ardm
from tf_ardm.networks import fixed_point
from tf_ardm.networks import logistic_mixture


class StageSpace(tf.Module):
  """The per-stage distributions of an Upscale model as TF ops (spec §6.4-6.5).

  Everything takes a per-example stage s int32 [B]; r = S-1-s is the
  diffusion step the stage undoes.

  The lossless codec codes a position's *choice*: the index of x_future
  among the A = `num_choices` values the stage can give a position holding
  x_past (data parametrisation: the values step r maps to x_past, as listed
  by `Transition.choices`; direct: the b digits). Only those values have
  probability, so the codec spends none on the impossible classes of K'.
  """

  def __init__(self, transition, parametrization="data", name=None):
    super().__init__(name=name)
    self.transition, self.parametrization = transition, parametrization
    self.num_stages = transition.num_stages
    self.cumulative = tf.constant(transition.cumulative())
    if parametrization == "data":
      self.matrices = tf.constant(transition.matrices())
      self.cumulative_matrices = tf.constant(transition.cumulative_matrices())
      self.num_outputs = transition.num_classes
      table, counts = transition.choices()
      order, bounds = transition.class_segments()
      self.class_order, self.class_bounds = tf.constant(order), tf.constant(bounds)
      # Image transitions keep the classes in order at every level: no sort,
      # and the classes of a value are a contiguous range of them.
      self.identity_order = bool((order == np.arange(order.shape[1])).all())
      self.choice_table, self.choice_counts = tf.constant(table), tf.constant(counts)
      self.num_choices = table.shape[-1]
    else:
      self.place = tf.constant([transition.branching**r
                                for r in range(self.num_stages)], tf.int32)
      self.num_outputs = self.num_stages * transition.branching
      self.num_choices = transition.branching

  def level(self, stage):
    """The diffusion step r = S-1-s int32 [B] that stage s int32 [B] undoes."""
    return self.num_stages - 1 - tf.convert_to_tensor(stage, tf.int32)

  def downscale(self, x, level):
    """x int32 [B, ...] after `level` int32 [B] steps."""
    table = tf.gather(self.cumulative, level)  # [B, K']
    flat = tf.reshape(x, [tf.shape(x)[0], -1])
    return tf.reshape(tf.gather(table, flat, batch_dims=1), tf.shape(x))

  def corrupt(self, x, stage):
    """(x_future, x_past) of data x int32 [B, ...] at `stage` int32 [B]."""
    r = self.level(stage)
    return self.downscale(x, r), self.downscale(x, r + 1)

  def log_probs(self, logits, x_past, stage):
    """Stage log-probabilities float32 [B, ..., n] given x_past int32 [B, ...].

    Data parametrisation: n = K' and logits are over the K data classes;
    direct: n = b and logits are [B, ..., S*b].
    """
    r = self.level(stage)
    batch = tf.shape(logits)[0]
    rank = len(logits.shape)
    if self.parametrization == "direct":
      b = self.transition.branching
      digits = tf.reshape(logits, tf.concat([tf.shape(logits)[:-1], [self.num_stages, b]], 0))
      picked = tf.gather(digits, stage, axis=rank - 1, batch_dims=1)
      return tf.nn.log_softmax(picked)
    k = self.transition.input_classes
    probs = tf.nn.softmax(logits)
    probs = tf.pad(probs, [[0, 0]] * (rank - 1) + [[0, k - self.num_outputs]])
    bar = tf.gather(self.cumulative_matrices, r)  # [B, K', K']
    flat = tf.reshape(probs, [batch, -1, k])
    future = tf.reshape(tf.einsum("bpk,bjk->bpj", flat, bar), tf.shape(probs))
    # allowed[j] = P[r][x_past, j]: the values j that step r maps to x_past.
    allowed = tf.gather(tf.gather(self.matrices, r), tf.reshape(x_past, [batch, -1]),
                        batch_dims=1)
    allowed = tf.reshape(allowed, tf.shape(probs))
    scores = tf.math.log(future * allowed + 1e-10) - (1.0 - allowed) * 1e20
    return scores - tf.reduce_logsumexp(scores, axis=-1, keepdims=True)

  def class_range(self, value, level):
    """The data classes that `level` int32 [B] steps map to `value` int32
    [B, ...]: (lower, upper), int32 [B, ...] each, the classes lower ..
    upper - 1. Data parametrisation with classes in order (identity_order)."""
    bounds = tf.gather(self.class_bounds, level)  # [B, K'+1]
    flat = tf.reshape(value, [tf.shape(value)[0], -1])
    lower = tf.gather(bounds, flat, batch_dims=1)
    upper = tf.gather(bounds, flat + 1, batch_dims=1)
    return tf.reshape(lower, tf.shape(value)), tf.reshape(upper, tf.shape(value))

  def target(self, x_future, stage):
    """The class index of x_future in the stage's output space."""
    if self.parametrization == "data":
      return x_future
    place = self._place(stage, x_future)
    return (x_future // place) % self.transition.branching

  def value(self, draw, x_past, stage):
    """The stage's new value from a drawn class index `draw`."""
    if self.parametrization == "data":
      return draw
    return x_past + draw * self._place(stage, x_past)

  def _place(self, stage, like):
    place = tf.gather(self.place, self.level(stage))
    return tf.reshape(place, tf.concat([[-1], tf.ones([tf.rank(like) - 1], tf.int32)], 0))

  def _choices(self, x_past, stage):
    """Data parametrisation: the values int32 [B, ..., A] the stage can give
    positions holding x_past, and which of them are real (bool, same shape;
    the rest is padding)."""
    r = self.level(stage)
    shape = tf.shape(x_past)
    flat = tf.reshape(x_past, [shape[0], -1])
    values = tf.gather(tf.gather(self.choice_table, r), flat, batch_dims=1)
    counts = tf.gather(tf.gather(self.choice_counts, r), flat, batch_dims=1)
    real = tf.range(self.num_choices) < counts[..., None]
    full = tf.concat([shape, [self.num_choices]], 0)
    return tf.reshape(values, full), tf.reshape(real, full)

  def choice_frequencies(self, logits, x_past, stage, softmax):
    """The integer codec's frequencies int64 [B, ..., A] of each choice.

    For int64 logits [B, ..., K] of an integer network (the codec's):
    direct, the softmax weights of the stage's b digits; data, the softmax
    weights of the data classes that reach x_past, summed into the choices
    (the values of x_future that step r maps to x_past; padding gets 0),
    as int32 prefix-sum differences; then fixed_point.frequencies' floor.
    """
    if self.parametrization == "direct":
      b = self.transition.branching
      digits = tf.reshape(logits, tf.concat([tf.shape(logits)[:-1], [self.num_stages, b]], 0))
      picked = tf.gather(digits, stage, axis=len(logits.shape) - 1, batch_dims=1)
      return fixed_point.frequencies(softmax(picked))
    r = self.level(stage)
    rank = len(logits.shape)
    # Only the data classes that reach x_past take part, so that the softmax
    # is relative to their largest logit (full precision where it matters).
    reach = tf.gather(tf.gather(self.cumulative, r + 1), tf.range(self.num_outputs), axis=1)
    reach = tf.reshape(reach, tf.concat([[-1], tf.ones([rank - 2], tf.int32),
                                         [self.num_outputs]], 0))
    reachable = tf.equal(reach, x_past[..., None])
    weights = softmax(tf.where(reachable, logits, tf.reduce_min(logits, -1, keepdims=True) -
                               2**30))
    # Weights of at most 2^EXP_BITS, K of them: int32 sums (K 2^20 < 2^31).
    weights = tf.where(reachable, tf.cast(weights, tf.int32), 0)
    # A choice's mass is the sum of the weights of the data classes that r
    # steps map to it: a contiguous run of the classes sorted by that value
    # (Transition.class_segments), so a difference of two prefix sums.
    batch = tf.shape(logits)[0]
    if not self.identity_order:
      weights = tf.gather(weights, tf.gather(self.class_order, r), axis=rank - 1, batch_dims=1)
    sums = fixed_point.prefix_sums(weights)  # [B, ..., K + 1]
    values, real = self._choices(x_past, stage)
    bounds = tf.gather(self.class_bounds, r)  # [B, K'+1]
    flat = tf.reshape(values, [batch, -1])
    lo = tf.reshape(tf.gather(bounds, flat, batch_dims=1), tf.shape(values))
    hi = tf.reshape(tf.gather(bounds, flat + 1, batch_dims=1), tf.shape(values))
    mass = (tf.gather(sums, hi, batch_dims=rank - 1) -
            tf.gather(sums, lo, batch_dims=rank - 1))
    return fixed_point.frequencies(tf.cast(mass, tf.int64), real)

  def choice(self, x_future, x_past, stage):
    """The choice int32 [B, ...] in [0, A) that gives x_future from x_past."""
    if self.parametrization == "direct":
      return self.target(x_future, stage)
    values, _ = self._choices(x_past, stage)
    # The first match is a real choice: padding repeats the first value.
    return tf.argmax(tf.cast(tf.equal(values, x_future[..., None]), tf.int32), -1,
                     output_type=tf.int32)

  def chosen_value(self, choice, x_past, stage):
    """The value int32 [B, ...] that `choice` (int32 [B, ...]) gives x_past."""
    if self.parametrization == "direct":
      return self.value(choice, x_past, stage)
    values, _ = self._choices(x_past, stage)
    return tf.gather(values, choice, batch_dims=len(choice.shape))


class UpscaleDenoiser(ardm.Denoiser):
  """A Denoiser whose stages follow the config's Upscale transition."""

  def __init__(self, config, network, name=None):
    super().__init__(config, network, name=name)
    self.space = StageSpace(config.upscale_transition, config.parametrization)

  def conditioning(self, t, known, stage):
    """Global time s*D + t; mask = known channels and the stage one-hot."""
    onehot = tf.one_hot(stage, self.num_stages)
    rank = len(known.shape)
    onehot = tf.reshape(onehot, tf.concat(
        [[-1], tf.ones([rank - 2], tf.int32), [self.num_stages]], 0))
    onehot = tf.broadcast_to(onehot, tf.concat([tf.shape(known)[:-1], [self.num_stages]], 0))
    return stage * self.num_steps + t, tf.concat([known, onehot], axis=-1)

  def stage_inputs(self, x, stage):
    return self.space.corrupt(x, stage)

  def mixture_ranges(self, x_future, x_past, stage):
    """Data parametrisation with the classes in order: p(x_future | x_past)
    is the mass of the data classes that r steps map to x_future over that
    of those that r + 1 steps map to x_past (`StageSpace.log_probs`), two
    contiguous ranges of classes (`ardm.Denoiser.mixture_ranges`)."""
    space = self.space
    if (not isinstance(self.network, logistic_mixture.LogisticMixture) or
        space.parametrization != "data" or not space.identity_order):
      return None
    level = space.level(stage)
    return space.class_range(x_future, level), space.class_range(x_past, level + 1)

  def stage_logits(self, logits, x_past, stage):
    return self.space.log_probs(logits, x_past, stage)

  def target(self, x_future, stage):
    return self.space.target(x_future, stage)

  def value(self, draw, x_past, stage):
    return self.space.value(draw, x_past, stage)

  @property
  def num_choices(self):
    return self.space.num_choices

  def choice_frequencies(self, logits, x_past, stage, softmax):
    return self.space.choice_frequencies(logits, x_past, stage, softmax)

  def choice(self, x_future, x_past, stage):
    return self.space.choice(x_future, x_past, stage)

  def chosen_value(self, choice, x_past, stage):
    return self.space.chosen_value(choice, x_past, stage)


class UpscaleARDM(ardm.OAARDM):
  """The Keras model of an Upscale ARDM: S*D steps, global t ~ U[0, S*D)."""

  denoiser_class = UpscaleDenoiser
