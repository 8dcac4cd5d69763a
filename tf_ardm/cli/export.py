r"""Writes both exports of a trained model into an export root.

  python -m tf_ardm.export --model=runs/digits/model --export_dir=DIR

  DIR/serving/<version>/  the servable: pure TF ops, for TF Serving and for
                          tf.saved_model.load without the range coder ops
  DIR/codec/              the servable's functions plus the lossless codec
                          (compress/decompress and their batched and solid
                          variants); import the range coder ops first
                          (tensorflow_compression_ops under TF 2.17,
                          tensorflow_compression under TF 2.14)

--model is a trained model directory (<workdir>/model), or an export
(root or SavedModel) whose model is exported again, e.g. to write its codec
in the current stream format. The codec's integer network is calibrated on
the first training datapoints of the model's dataset (--data_dir where it
needs one). See tf_ardm.serving.servable and tf_ardm.coding.codec for the
signatures.
"""
import time

from tf_ardm import errors
from tf_ardm.cli import app
from tf_ardm.cli import exports
from tf_ardm.cli import flags
from tf_ardm.serving import servable

FLAGS = flags.FLAGS


def main(argv):
  del argv
  path = flags.model_path("the trained model directory (or export) to export")
  errors.check(FLAGS.export_dir, "give --export_dir, the export root to write")
  errors.check_writable(FLAGS.export_dir, "--export_dir")
  start = time.monotonic()
  model = servable.restore_model(path)
  serving, codec_dir = exports.write(model, FLAGS.export_dir, FLAGS.version,
                                     FLAGS.max_batch, FLAGS.data_dir)
  print(f"servable export: {serving}\ncodec export: {codec_dir}")
  if FLAGS.verbose:
    print(f"exported in {time.monotonic() - start:.1f} s")


def run():
  app.run(main, "export")
