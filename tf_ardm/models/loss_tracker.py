"""Per-step loss tracker (spec §3.7): the inputs to the budget DP.

For every step t an exponential moving average (momentum 0.95) of the observed
one-step losses -elbo_per_t is kept, in bits/dim, so that sum_t ema[t]
approximates the model's bits/dim. The first observation of a step initialises
its average; unobserved steps report a penalty of log2(K) / num_steps.
Observations are all-gathered across replicas and applied in batch order,
exactly as if they were applied one at a time.
"""
import math

import tensorflow as tf


class LossTracker(tf.keras.layers.Layer):
  """Checkpointed EMA of per-step losses, float32 [num_steps]."""

  def __init__(self, num_steps, num_classes, momentum=0.95, **kwargs):
    super().__init__(trainable=False, **kwargs)
    self.num_steps, self.momentum = num_steps, momentum
    self.penalty = math.log2(num_classes) / num_steps
    sync = dict(synchronization=tf.VariableSynchronization.ON_WRITE,
                aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA,
                trainable=False)
    self.ema = self.add_weight("ema", [num_steps], tf.float32, "zeros", **sync)
    self.count = self.add_weight("count", [num_steps], tf.int64, "zeros", **sync)

  def update(self, t, loss, observed=None):
    """Applies observations in order.

    Args:
      t: int32 [N] steps.
      loss: float32 [N].
      observed: optional bool [N]; observations where it is False are skipped
        (fixed shapes, so that the update compiles under XLA).
    """
    ctx = tf.distribute.get_replica_context()
    observed = tf.ones_like(t, tf.int32) if observed is None else tf.cast(observed, tf.int32)
    if ctx is not None and ctx.num_replicas_in_sync > 1:
      t, loss, observed = (ctx.all_gather(v, axis=0) for v in (t, loss, observed))
    observed = observed > 0
    # Skipped observations go to an extra step, num_steps, dropped at the end.
    steps = self.num_steps + 1
    t = tf.where(observed, tf.cast(t, tf.int32), self.num_steps)
    count = tf.concat([self.count, tf.zeros([1], self.count.dtype)], 0)
    n = tf.shape(t)[0]
    m = self.momentum
    # Rank of each observation among those of the same step, in batch order.
    order = tf.argsort(t, stable=True)
    position = tf.range(n)
    first = tf.math.unsorted_segment_min(position, tf.gather(t, order), steps)
    rank = tf.scatter_nd(order[:, None],
                         position - tf.gather(first, tf.gather(t, order)), [n])
    group = tf.math.unsorted_segment_sum(tf.ones([n], tf.int32), t, steps)
    seen = tf.gather(count, t) > 0
    # Each observation's weight in the final average after its group's updates.
    exponent = tf.cast(tf.gather(group, t) - 1 - rank, tf.float32)
    weight = tf.where(seen | (rank > 0), 1.0 - m, 1.0) * m**exponent
    added = tf.math.unsorted_segment_sum(weight * loss, t, steps)[:-1]
    group = group[:-1]
    keep = tf.where(self.count > 0, m**tf.cast(group, tf.float32), 0.0)
    self.ema.assign(tf.where(group > 0, keep * self.ema + added, self.ema))
    self.count.assign_add(tf.cast(group, tf.int64))

  def loss_components(self):
    """Per-step losses in bits/dim, float32 [num_steps]; penalty if unseen."""
    return tf.where(self.count > 0, self.ema, self.penalty)
