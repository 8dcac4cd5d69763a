"""Training callbacks: the time limit and the TensorBoard summaries."""
import glob
import os

import numpy as np
import pytest
import tensorflow as tf

from conftest import tiny_config
from tf_ardm import models
from tf_ardm.data import text as text_lib
from tf_ardm.training import callbacks


class _Clock:
  """A monotonic clock that tests move by hand."""

  def __init__(self):
    self.now = 1000.0

  def __call__(self):
    return self.now


def test_time_limit_counts_steps_and_starts_its_clock_after_the_first(monkeypatch):
  clock = _Clock()
  monkeypatch.setattr(callbacks.time, "monotonic", clock)
  limit = callbacks.TimeLimit(minutes=1)
  limit.set_model(tf.keras.Sequential())
  limit.model.stop_training = False
  clock.now += 500.0  # The first step compiles for long: not counted.
  limit.on_train_batch_end(0)
  assert (limit.steps, limit.elapsed, limit.expired) == (1, 0.0, False)
  for _ in range(59):
    clock.now += 1.0
    limit.on_train_batch_end(0)
  assert (limit.steps, limit.elapsed, limit.expired) == (60, 59.0, False)
  assert not limit.model.stop_training
  clock.now += 1.0
  limit.on_train_batch_end(0)
  assert (limit.steps, limit.elapsed, limit.expired) == (61, 60.0, True)
  assert limit.model.stop_training


def test_time_limit_stops_fit_early():
  model = tf.keras.Sequential([tf.keras.layers.Dense(1)])
  model.compile("sgd", "mse")
  x = tf.zeros([4, 2])
  data = tf.data.Dataset.from_tensors((x, x[:, :1])).repeat()
  never, at_once = callbacks.TimeLimit(None), callbacks.TimeLimit(0.0)
  model.fit(data, epochs=3, steps_per_epoch=5, verbose=0, callbacks=[never])
  assert (never.steps, never.expired, int(model.optimizer.iterations)) == (15, False, 15)
  history = model.fit(data, epochs=3, steps_per_epoch=5, verbose=0, callbacks=[at_once])
  assert (at_once.steps, at_once.expired, int(model.optimizer.iterations)) == (1, True, 16)
  assert len(history.epoch) == 1  # Its epoch ends (validation, summaries), no other starts.


def _events(logdir):
  """{tag: (step, value as a NumPy array)} of the event files under logdir."""
  found = {}
  for path in glob.glob(os.path.join(logdir, "events.out.tfevents.*")):
    for event in tf.compat.v1.train.summary_iterator(path):
      for value in event.summary.value:
        found[value.tag] = (event.step, tf.make_ndarray(value.tensor))
  return found


@pytest.mark.parametrize("kind", ["image", "text"])
def test_summaries_hold_loss_components_and_samples(tmp_path, kind):
  config = (tiny_config() if kind == "image" else
            tiny_config("text", shape=(12, 1), num_classes=text_lib.NUM_CLASSES))
  model = models.build(config)
  model.loss_tracker.update(tf.constant([0, 1, 1]), tf.constant([0.25, 0.5, 1.0]))
  summary = callbacks.SummaryCallback(str(tmp_path), num_samples=16, sample_budget=2)
  summary.set_model(model)
  summary.on_epoch_end(2)
  events = _events(str(tmp_path))
  assert set(events) == {"loss_components", "loss_components_sum_bpd", "samples"}
  assert {step for step, _ in events.values()} == {3}  # Epoch 2 ends at summary step 3.
  expected_sum = float(np.sum(model.loss_tracker.loss_components().numpy()))
  assert events["loss_components_sum_bpd"][1] == pytest.approx(expected_sum)
  # Images are [width, height, png] string tensors.
  width, height, png = events["loss_components"][1]
  assert tf.io.decode_png(png).shape[:2] == (int(height), int(width)) and int(width) > 100
  samples = events["samples"][1]
  if kind == "image":
    width, height, png = samples
    # A 4 x 4 grid of the 16 4x4 samples, 1-pixel white gaps, scaled twice.
    assert (int(height), int(width)) == (42, 42)
    picture = tf.io.decode_png(png).numpy()
    assert picture.shape == (42, 42, 1) and (picture[:2] == 255).all()
  else:
    lines = [s.decode() for s in samples]
    assert len(lines) == 4 and all(len(line) == 12 for line in lines)
    assert set("".join(lines)) <= set("?" + text_lib.ALPHABET)  # No absorbing '_' left.
