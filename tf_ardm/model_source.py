"""--checkpoint / --model: where a command finds its trained model."""
from absl import flags

from tf_ardm import evaluation

flags.DEFINE_string("checkpoint", None, "Trained model directory (<workdir>/model).")
flags.DEFINE_string("model", None, "SavedModel export directory.")
flags.register_multi_flags_validator(
    ["checkpoint", "model"], lambda f: (f["checkpoint"] is None) != (f["model"] is None),
    "give exactly one of --checkpoint and --model")

FLAGS = flags.FLAGS


def load():
  """(scorer, ModelConfig) of the model named by --checkpoint or --model."""
  return evaluation.load_scorer(FLAGS.checkpoint, FLAGS.model)
