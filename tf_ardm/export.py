r"""Writes both exports of a trained model into an export root.

  python -m tf_ardm.export --checkpoint=runs/digits/model --export_dir=DIR

  DIR/serving/<version>/  the servable: pure TF ops, for TF Serving and for
                          tf.saved_model.load without tensorflow_compression
  DIR/codec/              the servable's functions plus the lossless codec
                          (compress/decompress and their batched and solid
                          variants); `import tensorflow_compression` first

See `tf_ardm.servable` and `tf_ardm.codec` for the signatures.
"""
from absl import flags

from tf_ardm import checkpoints
from tf_ardm import cli
from tf_ardm import codec
from tf_ardm import errors
from tf_ardm import exports

flags.DEFINE_string("checkpoint", None, "Trained model directory (<workdir>/model).")
flags.DEFINE_string("export_dir", None, "Export root to write.")
flags.DEFINE_integer("version", 1, "Servable version: DIR/serving/<version>.", lower_bound=1)
flags.DEFINE_integer("micro_batch", codec.DEFAULT_MICRO_BATCH,
                     "Codec: datapoints per network call (a multiple of 16, or 1).",
                     lower_bound=1)
flags.mark_flags_as_required(["checkpoint", "export_dir"])

FLAGS = flags.FLAGS


def main(argv):
  del argv
  errors.check_writable(FLAGS.export_dir, "--export_dir")
  serving, codec_dir = exports.write(checkpoints.restore(FLAGS.checkpoint), FLAGS.export_dir,
                                     FLAGS.version, FLAGS.micro_batch)
  print(f"servable export: {serving}\ncodec export: {codec_dir}")


if __name__ == "__main__":
  cli.run(main)
