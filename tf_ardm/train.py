r"""Trains an ARDM: python -m tf_ardm.train --flagfile=configs/digits.cfg.

--model_type=oa|upscale --branching=b chooses an OA-ARDM or an Upscale ARDM
(spec §6); the choice is stored in the model config.

Runs a Keras model with a custom train_step under a tf.distribute strategy,
with EMA weights, the per-step loss tracker, TensorBoard logs and a backup of
the training state every --checkpoint_every steps. SIGTERM backs up at the
end of the running step and exits with status 143; after that or a kill,
re-run the same command to continue. At the end it writes the trained model
to --workdir/model and the two SavedModels of the EMA weights
(tf_ardm.exports) under --export_dir, each atomically.
"""
import os
import sys

from absl import app
from absl import flags
from absl import logging
import numpy as np
import tensorflow as tf

from tf_ardm import callbacks as callbacks_lib
from tf_ardm import checkpoints
from tf_ardm import cli
from tf_ardm import errors
from tf_ardm import exports
from tf_ardm import input_pipeline
from tf_ardm import models
from tf_ardm import model_flags
from tf_ardm import optimizers
from tf_ardm import preemption
from tf_ardm import strategies

flags.DEFINE_string("workdir", "runs/digits", "Checkpoints, TensorBoard logs, model.")
flags.DEFINE_string("export_dir", None, "Export root: <export_dir>/serving/1 "
                    "and <export_dir>/codec (default: <workdir>/export).")
flags.DEFINE_enum("strategy", "mirrored", strategies.NAMES,
                  "tf.distribute strategy: mirrored (all local GPUs, or the "
                  "CPU), multi_worker (TF_CONFIG), one_device or tpu.")
flags.DEFINE_string("tpu", None, "--strategy=tpu: the TPU's name or grpc:// "
                    "address (default: the TPU VM's own TPU).")
flags.DEFINE_integer("batch_size", 64, "Global batch size.", lower_bound=1)
flags.DEFINE_integer("train_steps", 10000, "Total optimizer steps.", lower_bound=1)
flags.DEFINE_bool("export", True, "Write the SavedModel exports after training.")
flags.DEFINE_integer("steps_per_epoch", 500, "Steps between evaluations and "
                     "summaries.", lower_bound=1)
flags.DEFINE_integer("checkpoint_every", 100, "Steps between backups of the "
                     "training state in <workdir>/backup: a kill loses fewer "
                     "steps; SIGTERM backs up at once.", lower_bound=1)
flags.DEFINE_enum("optimizer", "adam", ["adam", "adamw"], "Optimizer.")
flags.DEFINE_float("learning_rate", 1e-4, "Peak learning rate.", lower_bound=0.0)
flags.DEFINE_integer("warmup_steps", 0, "Linear LR warm-up steps.", lower_bound=0)
flags.DEFINE_float("beta1", 0.9, "Adam beta1.", lower_bound=0.0, upper_bound=1.0)
flags.DEFINE_float("beta2", 0.999, "Adam beta2.", lower_bound=0.0, upper_bound=1.0)
flags.DEFINE_float("weight_decay", 0.0, "AdamW decoupled weight decay.", lower_bound=0.0)
flags.DEFINE_float("clip_norm", 100.0, "Global-norm gradient clipping.", lower_bound=0.0)
flags.DEFINE_float("ema_decay", 0.9999, "EMA decay of the evaluation weights.",
                   lower_bound=0.0, upper_bound=1.0)
flags.DEFINE_bool("augment", False, "Image augmentation: random flip and 90° rotations.")
flags.DEFINE_integer("eval_batch_size", 200, "Evaluation batch size.", lower_bound=1)
flags.DEFINE_integer("sample_budget", 64, "Network calls for TensorBoard samples.",
                     lower_bound=1)
flags.DEFINE_bool("jit_compile", True, "Compile the train step with XLA.")
flags.DEFINE_float("max_train_minutes", None, "Stop training after this much "
                   "wall-clock time after the first (compiling) step; then save "
                   "and export as usual.", lower_bound=0.0)
flags.DEFINE_integer("seed", 0, "Seed of the initial weights, data order, "
                     "orders and times.", lower_bound=0)
flags.DEFINE_bool("deterministic", False, "TF op determinism (deterministic "
                  "kernels, no parallel-interleave nondeterminism): two runs "
                  "with the same flags give bitwise-identical weights.")

FLAGS = flags.FLAGS
PREEMPTED_EXIT_CODE = 143  # 128 + SIGTERM, what a shell reports for a TERM kill.


def build_model(config, strategy):
  """The model and its compiled optimizer, under `strategy`."""
  with strategy.scope():
    model = models.build(config, ema_decay=FLAGS.ema_decay, seed=FLAGS.seed)
    optimizer = optimizers.build(
        FLAGS.optimizer, FLAGS.learning_rate, FLAGS.warmup_steps, FLAGS.beta1,
        FLAGS.beta2, weight_decay=FLAGS.weight_decay,
        clip_norm=FLAGS.clip_norm or None)
    optimizer.build(model.network.trainable_variables)
    model.compile(optimizer=optimizer, jit_compile=FLAGS.jit_compile)
  return model


def train(data, config, workdir, strategy, extra_callbacks=()):
  """Trains (or resumes) in `workdir`; returns the trained model.

  Raises preemption.Preempted after backing up, on SIGTERM.
  """
  tf.keras.utils.set_random_seed(FLAGS.seed)  # Python, NumPy and TF seeds.
  if FLAGS.deterministic:
    tf.config.experimental.enable_op_determinism()
  model = build_model(config, strategy)
  train_ds = input_pipeline.train_dataset(data, FLAGS.batch_size, FLAGS.seed,
                                          FLAGS.augment)
  eval_split = "valid" if "valid" in data.splits else "test"
  eval_ds = input_pipeline.eval_dataset(data.splits[eval_split], FLAGS.eval_batch_size)
  epochs = -(-FLAGS.train_steps // FLAGS.steps_per_epoch)
  tb = os.path.join(workdir, "tensorboard")
  limit = callbacks_lib.TimeLimit(
      float("inf") if FLAGS.max_train_minutes is None else FLAGS.max_train_minutes)
  model.fit(
      train_ds, epochs=epochs, steps_per_epoch=FLAGS.steps_per_epoch,
      validation_data=eval_ds, verbose=1,
      callbacks=[
          preemption.PreemptibleBackup(os.path.join(workdir, "backup"),
                                       FLAGS.checkpoint_every),
          tf.keras.callbacks.TerminateOnNaN(),
          tf.keras.callbacks.TensorBoard(tb, update_freq=max(1, FLAGS.steps_per_epoch // 10)),
          callbacks_lib.SummaryCallback(os.path.join(tb, "samples"),
                                        sample_budget=FLAGS.sample_budget),
          limit,
          *extra_callbacks,
      ])
  if not np.isfinite(model.loss_metric.result().numpy()):
    raise cli.UserError("training stopped: the loss became NaN")
  logging.warning("trained %d steps in this run%s", limit.steps,
                  " (time limit reached)" if limit.expired else "")
  return model


def main(argv):
  del argv
  export_dir = FLAGS.export_dir or os.path.join(FLAGS.workdir, "export")
  errors.check_writable(os.path.join(FLAGS.workdir, "model"), "--workdir")
  errors.check_writable(export_dir, "--export_dir")
  data = model_flags.load_data()
  config = model_flags.config_from_flags(data)
  strategy = strategies.build(FLAGS.strategy, FLAGS.tpu)
  logging.info("Training %s on %s, %d replica(s)", config.network, data.name,
               strategy.num_replicas_in_sync)
  try:
    model = train(data, config, FLAGS.workdir, strategy)
  except preemption.Preempted as e:
    print(f"stopped: {e}", file=sys.stderr)
    sys.exit(PREEMPTED_EXIT_CODE)
  if not strategy.extended.should_checkpoint:
    return  # A multi-worker run: the chief writes the model and the exports.
  model_dir = os.path.join(FLAGS.workdir, "model")
  checkpoints.save(model, model_dir)
  print(f"model: {model_dir} ({int(model.optimizer.iterations.numpy())} steps)")
  if FLAGS.export:
    serving, codec = exports.write(checkpoints.restore(model_dir), export_dir)
    print(f"servable export: {serving}\ncodec export: {codec}")


if __name__ == "__main__":
  cli.run(main)
