"""Training: distribution equivalence, resume, loss tracker, learning."""
import os
import subprocess
import sys
import textwrap

from absl import flags
import numpy as np
import pytest
import tensorflow as tf

from conftest import tiny_config
from tf_ardm.training import strategies
from tf_ardm.cli import train as train_lib
from tf_ardm.data import datasets
from tf_ardm.models.loss_tracker import LossTracker

FLAGS = flags.FLAGS
from conftest import REPO  # pylint: disable=g-bad-import-order


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


def _tiny_flags(workdir, **overrides):
  args = dict(dataset="digits", channels=16, num_res_blocks=1, batch_size=16,
              steps_per_epoch=3, train_steps=6, learning_rate=1e-3, ema_decay=0.9,
              sample_budget=4, jit_compile=False, workdir=workdir)
  args.update(overrides)
  FLAGS.unparse_flags()
  FLAGS(["train"] + [f"--{k}={v}" for k, v in args.items()])


class _Probe(tf.keras.callbacks.Callback):
  """Records the state at train begin (after BackupAndRestore restored it)."""

  def __init__(self, stop_after_epoch=None):
    super().__init__()
    self.stop_after_epoch, self.state = stop_after_epoch, None

  def on_train_begin(self, logs=None):
    self.state = _state(self.model)

  def on_epoch_end(self, epoch, logs=None):
    if epoch + 1 == self.stop_after_epoch:
      self.end_state = _state(self.model)
      raise KeyboardInterrupt  # An interruption right after a checkpoint.


def _state(model):
  return {"step": int(model.optimizer.iterations.numpy()),
          "ema": [w.numpy().copy() for w in model.ema_network.weights],
          "tracker": model.loss_tracker.ema.numpy().copy(),
          "count": model.loss_tracker.count.numpy().copy(),
          "rng": model.rng.state.numpy().copy()}


@pytest.mark.slow
def test_resume_restores_optimizer_ema_and_tracker(tmp_path):
  workdir = str(tmp_path / "run")
  _tiny_flags(workdir)
  data = datasets.load("digits")
  config = tiny_config(shape=(8, 8, 1), num_classes=17)
  strategy = strategies.build("one_device")
  first = _Probe(stop_after_epoch=1)
  with pytest.raises(KeyboardInterrupt):
    train_lib.train(data, config, workdir, strategy, extra_callbacks=[first])
  assert first.end_state["step"] == 3 and first.end_state["count"].sum() == 3 * 16
  second = _Probe()
  model = train_lib.train(data, config, workdir, strategy, extra_callbacks=[second])
  restored = second.state
  assert restored["step"] == 3
  for a, b in zip(restored["ema"], first.end_state["ema"]):
    np.testing.assert_array_equal(a, b)
  np.testing.assert_array_equal(restored["tracker"], first.end_state["tracker"])
  np.testing.assert_array_equal(restored["count"], first.end_state["count"])
  np.testing.assert_array_equal(restored["rng"], first.end_state["rng"])
  assert int(model.optimizer.iterations.numpy()) == 6
  FLAGS.unparse_flags()


@pytest.mark.slow
def test_short_training_lowers_test_bits_per_dim(tmp_path):
  _tiny_flags(str(tmp_path / "run"), steps_per_epoch=60, train_steps=180,
              channels=32, batch_size=32, ema_decay=0.95, learning_rate=2e-3)
  data = datasets.load("digits")
  config = tiny_config(shape=(8, 8, 1), num_classes=17)
  config.network_kwargs = dict(channels=32, num_res_blocks=1)
  strategy = strategies.build("one_device")

  def test_bpd(model):
    model.rng.reset_from_seed(123)
    return model.evaluate(tf.constant(data.splits["test"]), batch_size=120,
                          verbose=0, return_dict=True)["bpd"]

  before = test_bpd(train_lib.build_model(config, strategy))
  model = train_lib.train(data, config, str(tmp_path / "run"), strategy)
  after = test_bpd(model)
  FLAGS.unparse_flags()
  assert before > 3.9  # About log2(17) = 4.09 at initialisation.
  assert after < before - 1.0, (before, after)
