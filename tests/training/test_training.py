"""Training: distribution equivalence, resume, loss tracker, learning."""
import dataclasses
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf

from conftest import REPO, tiny_config
from tf_ardm import models
from tf_ardm.data import datasets
from tf_ardm.errors import UserError
from tf_ardm.models import checkpoints
from tf_ardm.models.loss_tracker import LossTracker
from tf_ardm.serving import servable
from tf_ardm.training import loop
from tf_ardm.training import strategies
from tf_ardm.training.config import TrainConfig


def _sequential_ema(steps, losses, num_steps, momentum=0.95):
  ema, count = np.zeros(num_steps), np.zeros(num_steps, int)
  for t, v in zip(steps, losses):
    ema[t] = v if count[t] == 0 else momentum * ema[t] + (1 - momentum) * v
    count[t] += 1
  return ema, count


def test_loss_tracker_equals_one_at_a_time_updates():
  rng = np.random.default_rng(0)
  tracker = LossTracker(7, num_classes=4)
  all_t, all_v = [], []
  for _ in range(5):
    t = rng.integers(0, 6, size=20)  # Step 6 is never observed.
    v = rng.random(20)
    tracker.update(tf.constant(t, tf.int32), tf.constant(v, tf.float32))
    all_t += list(t)
    all_v += list(v)
  ema, count = _sequential_ema(all_t, all_v, 7)
  np.testing.assert_allclose(tracker.ema.numpy()[:6], ema[:6], rtol=1e-5)
  np.testing.assert_array_equal(tracker.count.numpy(), count)
  components = tracker.loss_components().numpy()
  assert components[6] == pytest.approx(np.log2(4) / 7)  # Unseen-step penalty.


@pytest.mark.slow
def test_mirrored_two_cpus_matches_one_device():
  """Same batch: equal loss, gradients and trained state (subprocess, 2 CPUs)."""
  script = textwrap.dedent("""
      import numpy as np, tensorflow as tf
      cpu = tf.config.list_physical_devices("CPU")[0]
      tf.config.set_logical_device_configuration(
          cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
      import sys; sys.path.insert(0, "tests")
      from conftest import tiny_config
      from tf_ardm.models.ardm import OAARDM
      config = tiny_config()
      x = tf.random.stateless_uniform([8, 4, 4, 1], [0, 1], 0, 5, tf.int32)
      sigma = tf.argsort(tf.random.stateless_uniform([8, 16], [0, 2]), axis=-1)
      t = tf.random.stateless_uniform([8], [0, 3], 0, 16, tf.int32)

      def loss_and_grads(model, x, sigma, t):
        with tf.GradientTape() as tape:
          per_example, _ = model.per_example_loss(x, sigma, t)
          loss = tf.nn.compute_average_loss(per_example)
        grads = tape.gradient(loss, model.network.trainable_variables)
        return loss, [tf.convert_to_tensor(g) for g in grads]

      single = OAARDM(config)
      loss1, grads1 = loss_and_grads(single, x, sigma, t)
      strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
      assert strategy.num_replicas_in_sync == 2
      with strategy.scope():
        mirrored = OAARDM(config)
      for a, b in zip(mirrored.network.weights, single.network.weights):
        a.assign(b)
      split = lambda v: strategy.experimental_distribute_values_from_function(
          lambda ctx: tf.split(v, 2)[ctx.replica_id_in_sync_group])
      loss2, grads2 = strategy.run(
          tf.function(lambda *a: loss_and_grads(mirrored, *a)),
          args=(split(x), split(sigma), split(t)))
      loss2 = strategy.reduce("SUM", loss2, axis=None)
      np.testing.assert_allclose(loss1, loss2, rtol=1e-5)
      for g1, g2 in zip(grads1, grads2):
        g2 = strategy.reduce("SUM", g2, axis=None)
        np.testing.assert_allclose(g1, g2, rtol=2e-4, atol=2e-6)
      # Two full train steps through Keras fit: identical weights, EMA and
      # tracker. (SGD: Adam's normalisation would amplify float rounding of
      # near-zero gradients.)
      def fitted(strategy):
        with strategy.scope():
          model = OAARDM(config)
          opt = tf.keras.optimizers.SGD(0.5, global_clipnorm=1.0)
          opt.build(model.network.trainable_variables)
          model.compile(optimizer=opt)
        for a, b in zip(model.network.weights + model.ema_network.weights,
                        single.network.weights + single.ema_network.weights):
          a.assign(b)
        data = tf.data.Dataset.from_tensors(x).repeat(2)
        model.fit(data, epochs=1, verbose=0)
        return model
      one = fitted(tf.distribute.get_strategy())
      two = fitted(strategy)
      assert int(two.optimizer.iterations.numpy()) == 2
      for a, b in zip(one.network.weights + one.ema_network.weights,
                      two.network.weights + two.ema_network.weights):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-7)
      np.testing.assert_allclose(one.loss_tracker.ema.numpy(), two.loss_tracker.ema.numpy(),
                                 rtol=1e-5)
      np.testing.assert_array_equal(one.loss_tracker.count.numpy(),
                                    two.loss_tracker.count.numpy())
      print("OK", float(loss1), float(loss2), len(grads1))
  """)
  out = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True,
                       text=True, timeout=300)
  assert out.returncode == 0, out.stderr[-3000:]
  assert "OK" in out.stdout


def _tiny_train_config(**overrides):
  args = dict(batch_size=16, steps_per_epoch=3, train_steps=6, learning_rate=1e-3,
              ema_decay=0.9, sample_budget=4, jit_compile=False)
  args.update(overrides)
  return TrainConfig(**args)


class _Probe(tf.keras.callbacks.Callback):
  """Records the state at the first train begin (the backup restored)."""

  def __init__(self, stop_after_epoch=None):
    super().__init__()
    self.stop_after_epoch, self.state = stop_after_epoch, None

  def on_train_begin(self, logs=None):
    if self.state is None:
      self.state = _state(self.model)

  def on_epoch_end(self, epoch, logs=None):
    if epoch + 1 == self.stop_after_epoch:
      self.end_state = _state(self.model)
      raise KeyboardInterrupt  # An interruption right after a checkpoint.


def _state(model):
  return {"step": int(model.optimizer.iterations.numpy()),
          "ema": [w.numpy().copy() for w in model.ema_network.weights],
          "network": [w.numpy().copy() for w in model.network.weights],
          "tracker": model.loss_tracker.ema.numpy().copy(),
          "count": model.loss_tracker.count.numpy().copy(),
          "rng": model.rng.state.numpy().copy()}


@pytest.mark.slow
def test_resume_restores_optimizer_ema_and_tracker(tmp_path):
  workdir = str(tmp_path / "run")
  train_config = _tiny_train_config()
  data = datasets.load("digits")
  config = tiny_config(shape=(8, 8, 1), num_classes=17)
  strategy = strategies.build("one_device")
  first = _Probe(stop_after_epoch=1)
  with pytest.raises(KeyboardInterrupt):
    loop.train(data, config, train_config, workdir, strategy, extra_callbacks=[first])
  assert first.end_state["step"] == 3 and first.end_state["count"].sum() == 3 * 16
  second = _Probe()
  model = loop.train(data, config, train_config, workdir, strategy,
                     extra_callbacks=[second])
  restored = second.state
  assert restored["step"] == 3
  for a, b in zip(restored["ema"], first.end_state["ema"]):
    np.testing.assert_array_equal(a, b)
  np.testing.assert_array_equal(restored["tracker"], first.end_state["tracker"])
  np.testing.assert_array_equal(restored["count"], first.end_state["count"])
  np.testing.assert_array_equal(restored["rng"], first.end_state["rng"])
  assert int(model.optimizer.iterations.numpy()) == 6


def test_the_compiled_optimizer_follows_the_configured_schedule():
  config = tiny_config(shape=(8, 8, 1), num_classes=17)
  strategy = strategies.build("one_device")
  model = loop.build_model(config, _tiny_train_config(
      learning_rate=2e-3, warmup_steps=2, train_steps=10, lr_schedule="cosine"), strategy)
  schedule = model.optimizer._learning_rate  # Keras reads it at each step.
  rates = [float(schedule(step)) for step in (1, 2, 6, 10, 20)]
  np.testing.assert_allclose(rates, [1e-3, 2e-3, 1e-3, 0.0, 0.0], rtol=1e-5, atol=1e-12)


def test_train_config_refuses_unknown_schedules_and_a_cosine_within_the_warmup():
  with pytest.raises(UserError, match="unknown lr_schedule 'linear'; choose one of "
                     "constant, cosine"):
    TrainConfig(lr_schedule="linear")
  with pytest.raises(UserError, match=r"--lr_schedule=cosine needs train_steps \(100\) "
                     r"> warmup_steps \(200\)"):
    TrainConfig(lr_schedule="cosine", train_steps=100, warmup_steps=200)


def test_fit_calls_follow_the_epoch_grid_up_to_exactly_train_steps():
  assert loop.fit_calls(0, 6, 3) == [(0, 2, 3)]
  assert loop.fit_calls(3, 6, 3) == [(1, 2, 3)]
  assert loop.fit_calls(0, 7, 3) == [(0, 2, 3), (2, 3, 1)]  # A shorter last epoch.
  assert loop.fit_calls(4, 11, 3) == [(1, 2, 2), (2, 3, 3), (3, 4, 2)]
  assert loop.fit_calls(4, 8, 3) == [(1, 3, 2)]  # Epochs 1 and 2 of 2 steps each.
  assert loop.fit_calls(6, 6, 3) == loop.fit_calls(9, 6, 3) == []
  for n in range(1, 5):
    for train_steps in range(1, 13):
      for step in range(train_steps + 1):
        ranges = []  # (epoch, first step, end step) of every epoch the calls run.
        at = step
        for initial_epoch, epochs, steps_per_epoch in loop.fit_calls(step, train_steps, n):
          for epoch in range(initial_epoch, epochs):
            ranges.append((epoch, at, at + steps_per_epoch))
            at += steps_per_epoch
        assert ranges == [(e, max(step, e * n), min((e + 1) * n, train_steps))
                          for e in range(step // n, -(-train_steps // n))
                          if max(step, e * n) < min((e + 1) * n, train_steps)]


class _EpochEnds(tf.keras.callbacks.Callback):
  """Records (epoch, optimizer step) at every epoch end."""

  def __init__(self):
    super().__init__()
    self.ends = []

  def on_epoch_end(self, epoch, logs=None):
    self.ends.append((epoch, int(self.model.optimizer.iterations.numpy())))


@pytest.mark.slow
def test_resume_mid_epoch_continues_like_an_uninterrupted_run(tmp_path, capsys):
  data = datasets.load("digits")
  config = tiny_config(shape=(8, 8, 1), num_classes=17)
  strategy = strategies.build("one_device")
  train_config = _tiny_train_config(train_steps=7)  # Epochs: steps 0-2, 3-5 and 6.
  # A time limit of 0 stops after the first step; its epoch ends with a backup.
  stopped = loop.train(data, config, dataclasses.replace(train_config, max_train_minutes=0.0),
                       str(tmp_path / "a"), strategy)
  assert int(stopped.optimizer.iterations.numpy()) == 1
  ends = _EpochEnds()
  resumed = loop.train(data, config, train_config, str(tmp_path / "a"), strategy,
                       extra_callbacks=[ends])
  assert "resumed at step 1\n" in capsys.readouterr().out
  assert ends.ends == [(0, 3), (1, 6), (2, 7)]  # Epoch 0 ends, then the rest of the grid.
  whole = loop.train(data, config, train_config, str(tmp_path / "b"), strategy)
  assert int(whole.optimizer.iterations.numpy()) == 7
  # The same steps on the same batches: the state of an uninterrupted run.
  np.testing.assert_array_equal(resumed.loss_tracker.count.numpy(),
                                whole.loss_tracker.count.numpy())
  np.testing.assert_allclose(resumed.loss_tracker.ema.numpy(), whole.loss_tracker.ema.numpy(),
                             rtol=1e-5)
  for a, b in zip(resumed.network.weights + resumed.ema_network.weights,
                  whole.network.weights + whole.ema_network.weights):
    np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-4, atol=2e-4)


def test_warm_start_from_copies_the_ema_weights_into_both_networks_of_the_same_config():
  config = tiny_config(shape=(8, 8, 1), num_classes=17)
  trained, fresh = models.build(config, seed=1), models.build(config, seed=2)
  for var in trained.ema_network.weights:  # EMA weights unlike either network's.
    var.assign(tf.random.stateless_normal(var.shape, [0, var.shape.num_elements()]))
  loop.warm_start_from(fresh, trained)
  for network in (fresh.network, fresh.ema_network):
    for a, b in zip(network.weights, trained.ema_network.weights):
      np.testing.assert_array_equal(a.numpy(), b.numpy())
  other = models.build(dataclasses.replace(
      config, network_kwargs=dict(channels=8, num_res_blocks=1)))
  with pytest.raises(UserError, match=r"^can't warm-start from a model of another config: "
                     r"network_kwargs .*'channels': 16.*'channels': 8"):
    loop.warm_start_from(other, trained)


@pytest.mark.slow
def test_a_warm_start_begins_at_step_0_from_the_ema_weights_and_a_resume_ignores_it(
    tmp_path):
  data = datasets.load("digits")
  config = tiny_config(shape=(8, 8, 1), num_classes=17)
  strategy = strategies.build("one_device")
  one_step = _tiny_train_config(max_train_minutes=0.0)  # Stops after the first step.
  source = loop.train(data, config, one_step, str(tmp_path / "source"), strategy)
  checkpoints.save(source, str(tmp_path / "model"))
  trained = servable.restore_model(str(tmp_path / "model"))  # A model directory.
  ema = [w.numpy().copy() for w in trained.ema_network.weights]

  begin = _Probe()
  warm = loop.train(data, config, one_step, str(tmp_path / "warm"), strategy,
                    extra_callbacks=[begin], warm_start=trained)
  assert begin.state["step"] == 0 and begin.state["count"].sum() == 0
  for a, b in zip(begin.state["network"] + begin.state["ema"], ema + ema):
    np.testing.assert_array_equal(a, b)  # Both networks start from the EMA weights.
  assert int(warm.optimizer.iterations.numpy()) == 1

  resumed = _Probe()
  loop.train(data, config, one_step, str(tmp_path / "warm"), strategy,
             extra_callbacks=[resumed], warm_start=trained)
  assert resumed.state["step"] == 1  # The backup's step and weights, not the warm start's.
  for a, b in zip(resumed.state["network"], warm.network.weights):
    np.testing.assert_array_equal(a, b.numpy())


@pytest.mark.slow
def test_short_training_lowers_test_bits_per_dim(tmp_path):
  train_config = _tiny_train_config(steps_per_epoch=60, train_steps=180, batch_size=32,
                                    ema_decay=0.95, learning_rate=2e-3)
  data = datasets.load("digits")
  config = tiny_config(shape=(8, 8, 1), num_classes=17)
  config.network_kwargs = dict(channels=32, num_res_blocks=1)
  strategy = strategies.build("one_device")

  def test_bpd(model):
    model.rng.reset_from_seed(123)
    return model.evaluate(tf.constant(data.splits["test"]), batch_size=120,
                          verbose=0, return_dict=True)["bpd"]

  before = test_bpd(loop.build_model(config, train_config, strategy))
  model = loop.train(data, config, train_config, str(tmp_path / "run"), strategy)
  after = test_bpd(model)
  assert before > 3.9  # About log2(17) = 4.09 at initialisation.
  assert after < before - 1.0, (before, after)
