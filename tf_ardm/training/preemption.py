"""Preemption-safe training: periodic backups, and a last one on SIGTERM.

`PreemptibleBackup` is Keras' BackupAndRestore saving every `every` steps
and at the end of every epoch. It also catches SIGTERM during `fit`: at the
end of the running step it backs up the training state and raises
`Preempted` out of `fit` at once (no validation or summaries first, to stay
within a scheduler's grace period). Re-running the same command restores the
last backup, so a SIGTERM loses no step and a SIGKILL loses fewer than
`every` steps. Backups are TF checkpoints, committed atomically by their
`checkpoint` index file.

Under MultiWorkerMirroredStrategy the workers sum their SIGTERM flags after
every step, so all of them back up and stop at the same step.
"""
import signal

import tensorflow as tf


class Preempted(Exception):
  """Training stopped on SIGTERM after backing up at `step`."""

  def __init__(self, step):
    super().__init__(f"training stopped by SIGTERM at step {step}; its state is "
                     "saved: re-run the same command to continue")
    self.step = step


class PreemptibleBackup(tf.keras.callbacks.BackupAndRestore):
  """BackupAndRestore every `every` steps, at each epoch end and on SIGTERM.

  Prints `resumed at step N` when it restores a backup and `checkpoint at
  step N` after each backup (one line each, flushed).
  """

  def __init__(self, backup_dir, every):
    super().__init__(backup_dir, save_freq=every, delete_checkpoint=False)
    self._signalled = False
    self._previous_handler = None
    self._last_batch = 0

  def _step(self):
    return int(self.model.optimizer.iterations.numpy())

  def on_train_begin(self, logs=None):
    super().on_train_begin(logs)
    self._signalled = False
    self._previous_handler = signal.signal(signal.SIGTERM, self._on_sigterm)
    if self._step():
      print(f"resumed at step {self._step()}", flush=True)

  def _on_sigterm(self, signum, frame):
    del signum, frame
    self._signalled = True

  def _all_signalled(self):
    strategy = self.model.distribute_strategy
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
      return self._signalled
    signalled = tf.constant(int(self._signalled))  # An all-reduce over the workers.
    return bool(strategy.reduce(tf.distribute.ReduceOp.SUM, signalled, axis=None) > 0)

  def on_train_batch_end(self, batch, logs=None):
    super().on_train_batch_end(batch, logs)
    self._last_batch = batch
    if self._all_signalled():
      if self._batches_count:  # Not just backed up by the periodic save.
        self._backup(epoch=self._current_epoch, batch=batch)
      signal.signal(signal.SIGTERM, self._previous_handler)
      raise Preempted(self._step())

  def on_epoch_end(self, epoch, logs=None):
    if self._batches_count:  # Also back up at the end of every epoch.
      self._backup(epoch=epoch, batch=self._last_batch)
      self._batches_count = 0

  def on_train_end(self, logs=None):
    signal.signal(signal.SIGTERM, self._previous_handler)
    super().on_train_end(logs)

  def _backup(self, epoch, batch=0):
    super()._backup(epoch, batch)
    print(f"checkpoint at step {self._step()}", flush=True)
