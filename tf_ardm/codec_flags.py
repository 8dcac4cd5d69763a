"""Flags shared by the compress and decompress commands."""
from absl import flags

flags.DEFINE_string("model", None, "Codec export (or an export root holding codec/), "
                    "or a trained model directory.")
flags.DEFINE_bool("overwrite", False, "Replace an existing OUT.")
flags.DEFINE_bool("verbose", False, "Print sizes, bits/dim, the model's exact "
                  "code length and network calls (also -v).")
flags.mark_flag_as_required("model")
