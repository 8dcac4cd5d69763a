"""Training callbacks: summaries of samples and per-step losses, a time limit."""
import time

import numpy as np
import tensorflow as tf

from tf_ardm import images
from tf_ardm import plots
from tf_ardm import sampling
from tf_ardm.data import text as text_lib


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
    budget = min(self.sample_budget or d, d)
    policy = tf.cast(tf.round(tf.linspace(0.0, float(d), budget + 1))[:-1], tf.int32)
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
        tf.summary.text("samples", [text_lib.decode(s) for s in samples[:4]])
    self.writer.flush()


class TimeLimit(tf.keras.callbacks.Callback):
  """Stops training after `seconds` of wall clock (never when None).

  The clock starts when the first step of this run ends, so that compiling
  the train step (minutes under XLA on a loaded CPU) does not count.

  Attributes:
    expired: whether the limit stopped training.
  """

  def __init__(self, seconds=None):
    super().__init__()
    self.seconds, self.expired, self._start = seconds, False, None

  def on_train_batch_end(self, batch, logs=None):
    if self.seconds is None:
      return
    if self._start is None:
      self._start = time.monotonic()
    elif time.monotonic() - self._start >= self.seconds:
      self.expired = True
      self.model.stop_training = True
