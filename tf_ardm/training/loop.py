"""The training loop as a function of its configs.

`train(data, model_config, train_config, workdir, strategy)` runs Keras'
`fit` on the model's custom train_step under a tf.distribute strategy, with
EMA weights, the per-step loss tracker, TensorBoard logs, sample summaries
and a backup of the whole training state every `checkpoint_every` steps in
<workdir>/backup. Re-running it on the same workdir resumes from the last
backup, at its step, with the batches an uninterrupted run would see there,
and stops at exactly `train_steps`. SIGTERM backs up at the end of the
running step and raises `preemption.Preempted`. A warm start (`warm_start`,
a trained model of the same config) sets both networks to its EMA weights
when the run begins at step 0; the optimizer, the EMA and the step count
start afresh.

Epoch e covers the optimizer steps [e * n, min((e + 1) * n, train_steps))
of n = steps_per_epoch, also in a resumed run; `fit` runs once per stretch
of equally long epochs (`fit_calls`): a run resumed mid-epoch first ends
that epoch in a call of its own, and a shorter last epoch gets its own.
"""
import dataclasses
import os

from absl import logging
import numpy as np
import tensorflow as tf

from tf_ardm import models
from tf_ardm import seeding
from tf_ardm.data import pipeline
from tf_ardm.errors import UserError
from tf_ardm.training import callbacks as callbacks_lib
from tf_ardm.training import hardware
from tf_ardm.training import optimizers
from tf_ardm.training import preemption


def build_model(model_config, train_config, strategy):
  """The Keras model of `model_config` with its compiled optimizer, under `strategy`.

  An 'auto' precision or jit_compile=None is resolved for this machine
  (tf_ardm.training.hardware.resolve).
  """
  train_config = hardware.resolve(train_config)
  with strategy.scope():
    model = models.build(model_config, ema_decay=train_config.ema_decay,
                         seed=train_config.seed, precision=train_config.precision)
    optimizer = optimizers.build(
        train_config.optimizer, train_config.learning_rate, train_config.warmup_steps,
        train_config.beta1, train_config.beta2, weight_decay=train_config.weight_decay,
        clip_norm=train_config.clip_norm or None,
        loss_scale=train_config.precision == "float16",
        lr_schedule=train_config.lr_schedule, train_steps=train_config.train_steps)
    optimizer.build(model.network.trainable_variables)
    model.compile(optimizer=optimizer, jit_compile=train_config.jit_compile)
  return model


def fit_calls(step, train_steps, steps_per_epoch):
  """The `fit` calls that train from optimizer step `step` to `train_steps`.

  Returns:
    a list of (initial_epoch, epochs, steps_per_epoch), `fit`'s arguments:
    consecutive epochs of equal length share a call. E.g. from step 4 to 11
    in epochs of 3: [(1, 2, 2), (2, 3, 3), (3, 4, 2)].
  """
  calls = []
  while step < train_steps:
    epoch = step // steps_per_epoch
    length = min((epoch + 1) * steps_per_epoch, train_steps) - step
    if calls and calls[-1][2] == length:
      calls[-1][1] += 1
    else:
      calls.append([epoch, epoch + 1, length])
    step += length
  return [tuple(call) for call in calls]


def _check_same_config(theirs, ours):
  if theirs != ours:
    theirs, ours = dataclasses.asdict(theirs), dataclasses.asdict(ours)
    differ = ", ".join(f"{k} {theirs[k]!r} (this run: {ours[k]!r})"
                       for k in ours if theirs[k] != ours[k])
    raise UserError(f"can't warm-start from a model of another config: {differ}")


def warm_start_from(model, trained):
  """Sets `model`'s network and EMA network to `trained`'s EMA weights.

  Raises:
    UserError: when `trained` has another ModelConfig (its weights would
      not fit, or would mean something else).
  """
  _check_same_config(trained.config, model.config)
  for network in (model.network, model.ema_network):
    for var, value in zip(network.weights, trained.ema_network.weights):
      var.assign(value)


def train(data, model_config, train_config, workdir, strategy, extra_callbacks=(),
          warm_start=None):
  """Trains (or resumes) in `workdir`; returns the trained model.

  Args:
    data: a `tf_ardm.data.datasets.Dataset`; its 'valid' split (else 'test')
      is the validation data.
    model_config: the `ModelConfig` to train.
    train_config: a `TrainConfig`.
    workdir: directory of the backups and TensorBoard logs.
    strategy: a tf.distribute strategy.
    extra_callbacks: more Keras callbacks for `fit` (they see one
      on_train_begin/end per `fit` call, see `fit_calls`; the state is
      already restored at the first).
    warm_start: None, or a trained model (e.g. `servable.restore_model`)
      of `model_config` whose EMA weights start a run that has no backup
      yet; a resumed run takes its backup's weights instead.

  Raises:
    preemption.Preempted: on SIGTERM, after backing up.
    UserError: when the loss became NaN, the backup does not fit the model,
      or `warm_start` has another config.
  """
  if warm_start is not None:  # Refused before anything is written.
    _check_same_config(warm_start.config, model_config)
  seeding.set_random_seed(train_config.seed)  # Python, NumPy, TF and Keras seeds.
  if train_config.deterministic:
    tf.config.experimental.enable_op_determinism()
  model = build_model(model_config, train_config, strategy)
  backup = preemption.PreemptibleBackup(model, os.path.join(workdir, "backup"),
                                        train_config.checkpoint_every)
  eval_split = "valid" if "valid" in data.splits else "test"
  eval_ds = pipeline.eval_dataset(data.splits[eval_split], train_config.eval_batch_size)
  tb = os.path.join(workdir, "tensorboard")
  limit = callbacks_lib.TimeLimit(train_config.max_train_minutes)
  callbacks = [
      backup,
      tf.keras.callbacks.TerminateOnNaN(),
      tf.keras.callbacks.TensorBoard(
          tb, update_freq=max(1, train_config.steps_per_epoch // 10)),
      callbacks_lib.SummaryCallback(os.path.join(tb, "samples"),
                                    sample_budget=train_config.sample_budget),
      limit,
      *extra_callbacks,
  ]
  with backup:  # SIGTERM is caught from here on, also while restoring.
    start = backup.restore()
    if start == 0 and warm_start is not None:
      warm_start_from(model, warm_start)
    for initial_epoch, epochs, steps_per_epoch in fit_calls(
        start, train_config.train_steps, train_config.steps_per_epoch):
      train_ds = pipeline.train_dataset(data, train_config.batch_size, train_config.seed,
                                        train_config.augment, start_step=backup.step())
      model.fit(train_ds, initial_epoch=initial_epoch, epochs=epochs,
                steps_per_epoch=steps_per_epoch, validation_data=eval_ds, verbose=1,
                callbacks=callbacks)
      if model.stop_training:  # The time limit, or a NaN loss.
        break
  if not np.isfinite(model.loss_metric.result().numpy()):
    raise UserError("training stopped: the loss became NaN")
  logging.warning("trained %d steps in this run%s", limit.steps,
                  " (time limit reached)" if limit.expired else "")
  return model
