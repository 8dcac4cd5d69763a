r"""Exports a trained model as a SavedModel.

  python -m tf_ardm.export --checkpoint=runs/digits/model --export_dir=DIR [--codec]

See `tf_ardm.servable` for the signatures. With --codec the export also holds
the lossless codec (`tf_ardm.codec`: compress/decompress and their batched
and solid variants); it needs `import tensorflow_compression` before
tf.saved_model.load, so keep the plain export for TF Serving.
"""
from absl import flags

from tf_ardm import checkpoints
from tf_ardm import cli
from tf_ardm import codec
from tf_ardm import servable

flags.DEFINE_string("checkpoint", None, "Trained model directory (<workdir>/model).")
flags.DEFINE_string("export_dir", None, "Where to write the SavedModel.")
flags.DEFINE_bool("codec", False, "Export the codec SavedModel (tf_ardm.codec).")
flags.DEFINE_integer("micro_batch", 16, "Codec: datapoints per network call "
                     "(a multiple of 16, or 1).", lower_bound=1)
flags.mark_flags_as_required(["checkpoint", "export_dir"])

FLAGS = flags.FLAGS


def main(argv):
  del argv
  model = checkpoints.restore(FLAGS.checkpoint)
  if FLAGS.codec:
    print(codec.export(model, FLAGS.export_dir, FLAGS.micro_batch))
  else:
    print(servable.export(model, FLAGS.export_dir))


if __name__ == "__main__":
  cli.run(main)
