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

  def class_segments(self):
    """The data classes grouped by their value after r steps, for r = 0..S.

    Returns (order int32 [S+1, K], bounds int32 [S+1, K'+1]): order[r] lists
    the K data classes sorted (stably) by their value after r steps, and the
    classes that r steps map to v are order[r][bounds[r][v]:bounds[r][v+1]]
    (none when the two are equal).
    """
    reach = self.cumulative()[:, :self.num_classes]
    order = np.argsort(reach, axis=1, kind="stable").astype(np.int32)
    bounds = np.stack([np.searchsorted(np.sort(row), np.arange(self.input_classes + 1))
                       for row in reach]).astype(np.int32)
    return order, bounds

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
