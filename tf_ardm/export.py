r"""Exports a trained model as a SavedModel.

  python -m tf_ardm.export --checkpoint=runs/digits/model --export_dir=DIR

See `tf_ardm.servable` for the signatures.
"""
from absl import flags

from tf_ardm import checkpoints
from tf_ardm import cli
from tf_ardm import servable

flags.DEFINE_string("checkpoint", None, "Trained model directory (<workdir>/model).")
flags.DEFINE_string("export_dir", None, "Where to write the SavedModel.")
flags.mark_flags_as_required(["checkpoint", "export_dir"])

FLAGS = flags.FLAGS


def main(argv):
  del argv
  print(servable.export(checkpoints.restore(FLAGS.checkpoint), FLAGS.export_dir))


if __name__ == "__main__":
  cli.run(main)
