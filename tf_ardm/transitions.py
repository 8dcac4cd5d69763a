"""Upscale transitions (spec §6.1-6.3): how data is coarsened stage by stage.

A transition over K data classes is S deterministic downscaling steps in an
input space of K' >= K classes. Step i (0-based) maps a value that has been
downscaled i times to its value after i + 1 steps; after S steps every value
is the absorbing state. Generative stage s undoes diffusion step r = S-1-s:
it models x_future = down^r(x) given x_past = down^(r+1)(x).

The maps are int32 lookup tables; the 0/1 transition matrices of the
reference (P[i][out, in] = 1) are derived from them for the data
parametrisation. Stage counts use integer arithmetic: the smallest S with
b^S >= K.
"""
import dataclasses

import numpy as np
import tensorflow as tf

from tf_ardm import distributions
from tf_ardm.errors import UserError

NAMES = ("zero_lsb", "augment", "text8")
PARAMETRIZATIONS = ("data", "direct")
TEXT8_CLASSES = 28
TEXT8_VOWELS = (2, 6, 10, 16, 22)  # a, e, i, o, u in the text8 alphabet.


def num_stages(num_classes, branching):
  """The smallest S with branching^S >= num_classes (integer arithmetic)."""
  stages, reach = 0, 1
  while reach < num_classes:
    stages, reach = stages + 1, reach * branching
  return max(stages, 1)


@dataclasses.dataclass(frozen=True)
class Transition:
  """Deterministic downscaling steps over an input space of K' classes.

  Attributes:
    name: 'zero_lsb', 'augment' or 'text8'.
    num_classes: K, the data classes.
    branching: b (digits per step); 0 for text8.
    steps: int32 [S, K'] maps; steps[i][v] is v after one more step, for
      values v reachable after i steps (other entries map to the absorbing
      state and are never used).
    absorbing: the value every datum reaches after S steps.
  """
  name: str
  num_classes: int
  branching: int
  steps: np.ndarray
  absorbing: int

  @property
  def num_stages(self):
    return self.steps.shape[0]

  @property
  def input_classes(self):
    """K', the size of the space the stages live in."""
    return self.steps.shape[1]

  def cumulative(self):
    """int32 [S+1, K']: row r maps a data value to its value after r steps."""
    rows = [np.arange(self.input_classes, dtype=np.int32)]
    for step in self.steps:
      rows.append(step[rows[-1]])
    return np.stack(rows)

  def matrices(self):
    """The single-step 0/1 matrices P float32 [S, K', K'], P[i][out, in].

    Column `in` is nonzero only for values reachable after i steps.
    """
    reach = self.cumulative()[:, :self.num_classes]
    k = self.input_classes
    p = np.zeros([self.num_stages, k, k], np.float32)
    for i, step in enumerate(self.steps):
      sources = np.unique(reach[i])
      p[i, step[sources], sources] = 1.0
    return p

  def cumulative_matrices(self):
    """Pbar float32 [S+1, K', K']: Pbar[r][out, in] = 1 if r steps map in to out.

    Pbar[0] is the identity on the K data classes (zero columns beyond).
    """
    k = self.input_classes
    bar = np.zeros([self.num_stages + 1, k, k], np.float32)
    cols = np.arange(self.num_classes)
    for r, row in enumerate(self.cumulative()):
      bar[r, row[cols], cols] = 1.0
    return bar

  def choices(self):
    """What each step can undo: choices int32 [S, K', A] and counts int32 [S, K'].

    choices[i][v] lists, ascending, the values u reachable after i steps
    that step i maps to v; counts[i][v] says how many there are. A row is
    padded with its first value (rows of values v that nothing maps to are
    zero, count 0). A is the largest count: b for zero_lsb and augment.
    """
    reach = self.cumulative()[:, :self.num_classes]
    lists = [[[] for _ in range(self.input_classes)] for _ in range(self.num_stages)]
    for i, step in enumerate(self.steps):
      for u in np.unique(reach[i]):
        lists[i][step[u]].append(u)
    counts = np.array([[len(row) for row in rows] for rows in lists], np.int32)
    table = np.zeros([*counts.shape, counts.max()], np.int32)
    for i, rows in enumerate(lists):
      for v, row in enumerate(rows):
        if row:
          table[i, v] = row + row[:1] * (counts.max() - len(row))
    return table, counts


def zero_least_significant_digit(num_classes, branching):
  """Step i zeroes base-b digit i: v -> (v // b^(i+1)) * b^(i+1); absorbing 0."""
  stages = num_stages(num_classes, branching)
  v = np.arange(num_classes, dtype=np.int64)
  steps = np.stack([(v // branching**(i + 1)) * branching**(i + 1)
                    for i in range(stages)]).astype(np.int32)
  return Transition("zero_lsb", num_classes, branching, steps, 0)


def augment_least_significant_digit(num_classes, branching):
  """Step i maps v to v // b in a new block of classes after the previous one.

  K=256, b=4: blocks 256-319, 320-335, 336-339, absorbing 340, K' = 341.
  """
  stages = num_stages(num_classes, branching)
  offsets = [0]
  for i in range(stages):
    offsets.append(offsets[-1] + -(-num_classes // branching**i))
  k = offsets[-1] + 1
  steps = np.full([stages, k], offsets[-1], np.int32)
  for i in range(stages):
    size = offsets[i + 1] - offsets[i]
    u = np.arange(size)
    steps[i, offsets[i] + u] = offsets[i + 1] + u // branching
  return Transition("augment", num_classes, branching, steps, offsets[-1])


def augment_text8(num_classes=TEXT8_CLASSES):
  """text8: letters -> vowel (28) / consonant (29); then all -> 30. K' = 31."""
  if num_classes != TEXT8_CLASSES:
    raise UserError(f"the text8 transition needs text8 data (K = {TEXT8_CLASSES}), "
                    f"not K = {num_classes}")
  vowel, consonant, absorbing = 28, 29, 30
  first = np.full([absorbing + 1], absorbing, np.int32)
  first[:2] = [0, 1]
  first[2:num_classes] = consonant
  first[list(TEXT8_VOWELS)] = vowel
  second = np.full([absorbing + 1], absorbing, np.int32)
  return Transition("text8", num_classes, 0, np.stack([first, second]), absorbing)


def build(name, num_classes, branching, kind="image", parametrization="data"):
  """The transition `name` for K classes; UserError if it does not fit the data."""
  if name not in NAMES:
    raise UserError(f"unknown transition {name!r}; choose one of {', '.join(NAMES)}")
  if parametrization not in PARAMETRIZATIONS:
    raise UserError(f"unknown parametrization {parametrization!r}; choose one of "
                    f"{', '.join(PARAMETRIZATIONS)}")
  if name == "text8":
    if kind != "text":
      raise UserError("the text8 vowel/consonant transition only applies to text "
                      f"data, not to {kind} data")
    if parametrization == "direct":
      raise UserError("the direct parametrization needs digits: use "
                      "--transition=zero_lsb")
    return augment_text8(num_classes)
  if not 2 <= branching <= num_classes:
    raise UserError(f"branching factor {branching} does not fit K = {num_classes} "
                    f"classes: it must lie in [2, {num_classes}]")
  stages = num_stages(num_classes, branching)
  if branching**stages != num_classes:
    raise UserError(f"branching factor {branching} does not fit K = {num_classes} "
                    f"classes: K must be a power of it (b^S = K; {branching}^"
                    f"{stages} = {branching**stages})")
  if name == "augment":
    if parametrization == "direct":
      raise UserError("the direct parametrization needs digits: use "
                      "--transition=zero_lsb")
    return augment_least_significant_digit(num_classes, branching)
  return zero_least_significant_digit(num_classes, branching)


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
      self.choice_table, self.choice_counts = tf.constant(table), tf.constant(counts)
      self.num_choices = table.shape[-1]
    else:
      self.place = tf.constant([transition.branching**r
                                for r in range(self.num_stages)], tf.int32)
      self.num_outputs = self.num_stages * transition.branching
      self.num_choices = transition.branching

  def _level(self, stage):
    return self.num_stages - 1 - tf.convert_to_tensor(stage, tf.int32)

  def downscale(self, x, level):
    """x int32 [B, ...] after `level` int32 [B] steps."""
    table = tf.gather(self.cumulative, level)  # [B, K']
    flat = tf.reshape(x, [tf.shape(x)[0], -1])
    return tf.reshape(tf.gather(table, flat, batch_dims=1), tf.shape(x))

  def corrupt(self, x, stage):
    """(x_future, x_past) of data x int32 [B, ...] at `stage` int32 [B]."""
    r = self._level(stage)
    return self.downscale(x, r), self.downscale(x, r + 1)

  def log_probs(self, logits, x_past, stage):
    """Stage log-probabilities float32 [B, ..., n] given x_past int32 [B, ...].

    Data parametrisation: n = K' and logits are over the K data classes;
    direct: n = b and logits are [B, ..., S*b].
    """
    r = self._level(stage)
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
    place = tf.gather(self.place, self._level(stage))
    return tf.reshape(place, tf.concat([[-1], tf.ones([tf.rank(like) - 1], tf.int32)], 0))

  def _choices(self, x_past, stage):
    """Data parametrisation: the values int32 [B, ..., A] the stage can give
    positions holding x_past, and which of them are real (bool, same shape;
    the rest is padding)."""
    r = self._level(stage)
    shape = tf.shape(x_past)
    flat = tf.reshape(x_past, [shape[0], -1])
    values = tf.gather(tf.gather(self.choice_table, r), flat, batch_dims=1)
    counts = tf.gather(tf.gather(self.choice_counts, r), flat, batch_dims=1)
    real = tf.range(self.num_choices) < counts[..., None]
    full = tf.concat([shape, [self.num_choices]], 0)
    return tf.reshape(values, full), tf.reshape(real, full)

  def choice_probs(self, logits, x_past, stage):
    """The codec's probabilities float32 [B, ..., A] of each choice (spec §5.2).

    `distributions.safe_probs` of the stage distribution (`log_probs`),
    restricted to the possible choices: padding gets probability 0.
    """
    log_probs = self.log_probs(logits, x_past, stage)
    if self.parametrization == "direct":
      return distributions.safe_probs(log_probs)
    values, real = self._choices(x_past, stage)
    rank = len(values.shape) - 1
    return distributions.safe_probs(tf.gather(log_probs, values, batch_dims=rank), real)

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
