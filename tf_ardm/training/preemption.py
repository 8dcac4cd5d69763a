"""Preemption-safe training: periodic backups, and a last one on SIGTERM.

`PreemptibleBackup` is a Keras callback that owns a `tf.train.Checkpoint` of
the whole training state and a `tf.train.CheckpointManager` over
<backup_dir>/chief. It backs up every `every` steps (counted from the last
backup) and at the end of every epoch. It also catches SIGTERM: at the end of
the running step it backs up and raises `Preempted` out of `fit` at once (no
validation or summaries first, to stay within a scheduler's grace period).
Re-running the same command restores the last backup, so a SIGTERM loses no
step and a SIGKILL loses fewer than `every` steps.

Atomicity: CheckpointManager first writes a complete checkpoint
(ckpt-<step>.index and .data files), then replaces its `checkpoint` index
file atomically to name it, and only then deletes the previous one. A kill
at any moment leaves an index that names a complete checkpoint.

The checkpoint's root holds the Keras model, which tracks the training and
EMA networks, the optimizer (its iterations and slots), the loss tracker,
the metrics and the model's RNG. (The same object graph as Keras'
BackupAndRestore wrote, under the same <backup_dir>/chief, so backups of
earlier versions resume.)

Under MultiWorkerMirroredStrategy the workers sum their SIGTERM flags after
every step, so all of them back up and stop at the same step. Every worker
saves (a save may read variables collectively), but only the chief into
<backup_dir>/chief; the others write into <backup_dir>/workertemp_<task id>
and delete it at once. All of them restore from the chief's backup.
"""
import os
import signal

import tensorflow as tf

from tf_ardm.errors import UserError

CHIEF = "chief"


class Preempted(Exception):
  """Training stopped on SIGTERM after backing up at `step`."""

  def __init__(self, step):
    super().__init__(f"training stopped by SIGTERM at step {step}; its state is "
                     "saved: re-run the same command to continue")
    self.step = step


class PreemptibleBackup(tf.keras.callbacks.Callback):
  """Backs up `model`'s training state every `every` steps, at each epoch end and on SIGTERM.

  Prints `resumed at step N` when it restores a backup and `checkpoint at
  step N` after each backup (one line each, flushed).

  `restore()` (also run by the first `on_train_begin`) restores the last
  backup. SIGTERM is caught from the first `on_train_begin` to the end of
  that `fit`; used as a context manager, from `__enter__` to `__exit__`
  instead, across several `fit` calls (a SIGTERM between them stops the next
  step, or `__exit__` when no step follows).

  Attributes:
    backup_dir: the backup directory; the chief's checkpoints lie in
      <backup_dir>/chief.
    every: steps between periodic backups.
  """

  def __init__(self, model, backup_dir, every):
    super().__init__()
    self.backup_dir, self.every = backup_dir, every
    self._checkpoint = tf.train.Checkpoint(model=model)
    self._strategy = model.distribute_strategy
    self._optimizer = model.optimizer
    self._read_dir = os.path.join(backup_dir, CHIEF)
    self._chief = self._strategy.extended.should_checkpoint
    if self._chief:
      self._write_dir = self._read_dir
    else:
      task_id = self._strategy.cluster_resolver.task_id
      self._write_dir = os.path.join(backup_dir, f"workertemp_{task_id}")
    self._manager = tf.train.CheckpointManager(self._checkpoint, self._write_dir,
                                               max_to_keep=1)
    self._restored, self._held = False, False
    self._saved_step = None
    self._signalled, self._previous_handler = False, None

  def step(self):
    """The optimizer step, int."""
    return int(self._optimizer.iterations.numpy())

  def restore(self):
    """Restores the last backup, once; returns the optimizer step (0: none).

    Raises:
      UserError: when the backup does not fit the model.
    """
    if not self._restored:
      self._restored = True
      latest = tf.train.latest_checkpoint(self._read_dir)
      if latest:
        try:
          self._checkpoint.restore(latest).expect_partial().assert_existing_objects_matched()
        except (AssertionError, ValueError, tf.errors.OpError) as e:
          raise UserError(f"cannot resume from {latest}: {str(e).splitlines()[0]} (a "
                          f"backup of another model? delete {self.backup_dir} to start "
                          "over)") from None
        print(f"resumed at step {self.step()}", flush=True)
      self._saved_step = self.step()
    return self.step()

  def save(self):
    """Backs up the training state now (unless already at this step)."""
    step = self.step()
    if step == self._saved_step:
      return
    self._manager.save(checkpoint_number=step)
    if not self._chief:
      tf.io.gfile.rmtree(self._write_dir)
    self._saved_step = step
    print(f"checkpoint at step {step}", flush=True)

  def __enter__(self):
    self._arm()
    self._held = True
    return self

  def __exit__(self, exc_type, exc, traceback):
    self._held = False
    self._disarm()
    if exc_type is None and self._all_signalled():
      self.save()
      raise Preempted(self.step())

  def _arm(self):
    if self._previous_handler is None:
      self._signalled = False
      self._previous_handler = signal.signal(signal.SIGTERM, self._on_sigterm)

  def _disarm(self):
    if self._previous_handler is not None:
      signal.signal(signal.SIGTERM, self._previous_handler)
      self._previous_handler = None

  def _on_sigterm(self, signum, frame):
    del signum, frame
    self._signalled = True

  def _all_signalled(self):
    if not isinstance(self._strategy, tf.distribute.MultiWorkerMirroredStrategy):
      return self._signalled
    signalled = tf.constant(int(self._signalled))  # An all-reduce over the workers.
    return bool(self._strategy.reduce(tf.distribute.ReduceOp.SUM, signalled, axis=None) > 0)

  def on_train_begin(self, logs=None):
    self._arm()
    self.restore()

  def on_train_batch_end(self, batch, logs=None):
    if self.step() - self._saved_step >= self.every:
      self.save()
    if self._all_signalled():
      self.save()
      self._disarm()
      raise Preempted(self.step())

  def on_epoch_end(self, epoch, logs=None):
    self.save()

  def on_train_end(self, logs=None):
    if not self._held:
      self._disarm()
