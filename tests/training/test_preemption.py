"""PreemptibleBackup without fit: what a backup holds, SIGTERM, mismatched backups."""
import os
import signal

import numpy as np
import pytest
import tensorflow as tf

from conftest import tiny_config
from tf_ardm.errors import UserError
from tf_ardm.training import loop
from tf_ardm.training import preemption
from tf_ardm.training.config import TrainConfig

STRATEGY = tf.distribute.get_strategy()


def _model(channels=16, seed=0):
  config = tiny_config()
  config.network_kwargs = dict(channels=channels, num_res_blocks=1)
  return loop.build_model(config, TrainConfig(seed=seed, jit_compile=False), STRATEGY)


def _state(model):
  """Every variable of the training state, by role."""
  opt = model.optimizer
  return {"step": opt.iterations.numpy(),
          "slots": [v.numpy() for v in opt.variables],
          "network": [w.numpy() for w in model.network.weights],
          "ema": [w.numpy() for w in model.ema_network.weights],
          "tracker": [model.loss_tracker.ema.numpy(), model.loss_tracker.count.numpy()],
          "rng": model.rng.state.numpy()}


def _perturb(model, step):
  """Moves every part of the training state away from its initial value."""
  model.optimizer.iterations.assign(step)
  for i, v in enumerate(model.optimizer.variables[1:]):
    v.assign(tf.fill(v.shape, float(i + 1)))
  for w in model.network.weights + model.ema_network.weights:
    w.assign(w + 0.5)
  model.loss_tracker.update(tf.constant([0, 3, 3]), tf.constant([1.0, 2.0, 3.0]))
  model.rng.skip(17)


def _assert_equal(a, b):
  for key in a:
    for x, y in zip(tf.nest.flatten(a[key]), tf.nest.flatten(b[key])):
      np.testing.assert_array_equal(x, y, err_msg=key)


def test_backup_restores_the_whole_training_state(tmp_path, capsys):
  trained = _model()
  _perturb(trained, 5)
  backup = preemption.PreemptibleBackup(trained, str(tmp_path), every=2)
  backup.save()
  assert capsys.readouterr().out == "checkpoint at step 5\n"
  # CheckpointManager's layout: an index naming a complete checkpoint.
  latest = tf.train.latest_checkpoint(str(tmp_path / "chief"))
  assert latest.endswith("ckpt-5") and os.path.isfile(latest + ".index")
  fresh = _model(seed=1)
  assert preemption.PreemptibleBackup(fresh, str(tmp_path), every=2).restore() == 5
  assert capsys.readouterr().out == "resumed at step 5\n"
  before, after = _state(trained), _state(fresh)
  assert len(after["slots"]) > 2  # iterations, and Adam's m and v of each weight.
  _assert_equal(before, after)


def test_backup_keeps_one_checkpoint_and_saves_each_step_once(tmp_path, capsys):
  model = _model()
  backup = preemption.PreemptibleBackup(model, str(tmp_path), every=2)
  assert backup.restore() == 0 and capsys.readouterr().out == ""  # Nothing to resume.
  backup.save()  # Step 0 is the restored step: nothing new to save.
  for step in (1, 2, 3, 4, 5):
    model.optimizer.iterations.assign(step)
    backup.on_train_batch_end(0)  # Every 2 steps since the last backup.
  backup.on_epoch_end(0)  # And at each epoch end, unless just saved.
  backup.on_epoch_end(0)
  assert capsys.readouterr().out == "".join(
      f"checkpoint at step {s}\n" for s in (2, 4, 5))
  files = sorted(os.listdir(tmp_path / "chief"))
  assert files == ["checkpoint", "ckpt-5.data-00000-of-00001", "ckpt-5.index"]


def test_a_backup_of_another_model_is_a_user_error(tmp_path):
  preemption.PreemptibleBackup(_model(channels=32), str(tmp_path), every=2).save()
  with pytest.raises(UserError, match=r"cannot resume from .*ckpt-0: .*delete .* to start over"):
    preemption.PreemptibleBackup(_model(channels=16), str(tmp_path), every=2).restore()


def _term_self():
  os.kill(os.getpid(), signal.SIGTERM)


def test_sigterm_backs_up_at_the_end_of_the_step_and_raises(tmp_path, capsys):
  model = _model()
  backup = preemption.PreemptibleBackup(model, str(tmp_path), every=100)
  backup.set_model(model)
  previous = signal.getsignal(signal.SIGTERM)
  backup.on_train_begin()
  model.optimizer.iterations.assign(1)
  backup.on_train_batch_end(0)
  _term_self()  # Caught: the running step goes on.
  model.optimizer.iterations.assign(2)
  with pytest.raises(preemption.Preempted, match="stopped by SIGTERM at step 2; its state"):
    backup.on_train_batch_end(1)
  assert capsys.readouterr().out == "checkpoint at step 2\n"
  assert signal.getsignal(signal.SIGTERM) is previous  # The handler is given back.
  assert tf.train.latest_checkpoint(str(tmp_path / "chief")).endswith("ckpt-2")


def _fit(backup, model, sigterm_after=False):
  """What one fit call of one step does to the callback."""
  backup.on_train_begin()
  model.optimizer.iterations.assign_add(1)
  backup.on_train_batch_end(0)
  backup.on_train_end()
  if sigterm_after:
    _term_self()


@pytest.mark.parametrize("then", ["fit", "exit"])
def test_as_a_context_manager_sigterm_between_or_after_fit_calls_stops(tmp_path, capsys, then):
  model = _model()
  backup = preemption.PreemptibleBackup(model, str(tmp_path), every=100)
  backup.set_model(model)
  previous = signal.getsignal(signal.SIGTERM)
  with pytest.raises(preemption.Preempted) as stopped:
    with backup:
      _fit(backup, model, sigterm_after=True)  # Caught, though this fit has ended...
      if then == "fit":
        _fit(backup, model)  # ...the next step stops, or else leaving the block does.
  step = 2 if then == "fit" else 1
  assert stopped.value.step == step and capsys.readouterr().out == f"checkpoint at step {step}\n"
  assert signal.getsignal(signal.SIGTERM) is previous
