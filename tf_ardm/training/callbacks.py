"""Training callbacks: summaries of samples and per-step losses, a time limit."""
import time

import numpy as np
import tensorflow as tf

from tf_ardm.evaluation import images
from tf_ardm.evaluation import plots
from tf_ardm.generation import policies
from tf_ardm.generation import sampling
from tf_ardm.data import datasets


class SummaryCallback(tf.keras.callbacks.Callback):
  """At each epoch end: a sample grid (or text) and the loss-component curve."""

  def __init__(self, logdir, num_samples=16, sample_budget=None, every=1):
    super().__init__()
    self.writer = tf.summary.create_file_writer(logdir)
    self.num_samples, self.sample_budget, self.every = num_samples, sample_budget, every
    self._sample_fn = None

  def _samples(self, epoch):
    model = self.model
    d = model.num_steps
    policy = policies.naive_policy(d, min(self.sample_budget or d, d))
    if self._sample_fn is None:
      self._sample_fn = tf.function(
          lambda p, s: sampling.sample(model.ema, self.num_samples, p, s))
    return self._sample_fn(policy, tf.constant([epoch, 0])).numpy()

  def on_epoch_end(self, epoch, logs=None):
    if (epoch + 1) % self.every:
      return
    config = self.model.config
    components = self.model.loss_tracker.loss_components().numpy()
    samples = self._samples(epoch)
    with self.writer.as_default(step=epoch + 1):
      tf.summary.image("loss_components", plots.line_plot(
          [("loss per step", components)], "step t", "bits/dim")[None])
      tf.summary.scalar("loss_components_sum_bpd", float(np.sum(components)))
      if config.kind == "image":
        g = images.grid(samples, config.num_classes, scale=2)
        tf.summary.image("samples", g[None])
      else:
        tf.summary.text("samples", [datasets.decode_text(s, config) for s in samples[:4]])
    self.writer.flush()


class TimeLimit(tf.keras.callbacks.Callback):
  """Stops training after `minutes` of wall-clock time (None: never).

  The clock starts when the first step ends, so that XLA compilation does
  not count.

  Attributes:
    expired: whether the limit stopped training.
    steps: optimizer steps taken in this run.
    elapsed: seconds since the first step ended.
  """

  def __init__(self, minutes):
    super().__init__()
    self.seconds = float("inf") if minutes is None else 60.0 * minutes
    self.expired, self.steps, self.elapsed, self._start = False, 0, 0.0, None

  def on_train_batch_end(self, batch, logs=None):
    self.steps += 1
    now = time.monotonic()
    if self._start is None:
      self._start = now
    self.elapsed = now - self._start
    if self.elapsed >= self.seconds:
      self.expired = self.model.stop_training = True
