r"""Trains an ARDM: python -m tf_ardm.train --flagfile=configs/digits.cfg.

--model_type=oa|upscale --branching=b chooses an OA-ARDM or an Upscale ARDM
(spec §6); --objective=absorbing --diffusion_steps=T trains the same network
as T-step absorbing diffusion. The choice is stored in the model config.

Trains with the model's custom train_step under a tf.distribute strategy
(tf_ardm.training.loop), with EMA weights, the per-step loss tracker,
TensorBoard logs and a backup of the training state every
--checkpoint_every steps. SIGTERM backs up at the end of the running step and
exits with status 143; after that or a kill, re-run the same command to
continue. --init_from=MODEL warm-starts a new run from the EMA weights of a
trained model directory or an export of the same config. At the end it
writes the trained model to <workdir>/model and the two SavedModels of the
EMA weights under --export_dir, each atomically.
"""
import os
import sys

from absl import logging

from tf_ardm import errors
from tf_ardm.cli import app
from tf_ardm.cli import exports
from tf_ardm.cli import flags
from tf_ardm.models import checkpoints
from tf_ardm.serving import servable
from tf_ardm.training import loop
from tf_ardm.training import preemption
from tf_ardm.training import strategies

FLAGS = flags.FLAGS
PREEMPTED_EXIT_CODE = 143  # 128 + SIGTERM, what a shell reports for a TERM kill.


def main(argv):
  del argv
  export_dir = FLAGS.export_dir or os.path.join(FLAGS.workdir, "export")
  errors.check_writable(os.path.join(FLAGS.workdir, "model"), "--workdir")
  errors.check_writable(export_dir, "--export_dir")
  data = flags.load_data()
  model_config, train_config = flags.model_config(data), flags.train_config()
  warm_start = servable.restore_model(FLAGS.init_from) if FLAGS.init_from else None
  strategy = strategies.build(FLAGS.strategy, FLAGS.tpu)
  logging.info("Training %s on %s, %d replica(s)", model_config.network, data.name,
               strategy.num_replicas_in_sync)
  try:
    model = loop.train(data, model_config, train_config, FLAGS.workdir, strategy,
                       warm_start=warm_start)
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


def run():
  app.run(main, "train")
