"""Flags that describe the data and the model, shared by every command.

Validators only check values; they never touch the file system.
"""
from absl import flags

from tf_ardm import transitions
from tf_ardm import config as config_lib
from tf_ardm.config import ModelConfig
from tf_ardm.data import datasets

flags.DEFINE_enum("dataset", "digits", datasets.NAMES, "Dataset to use.")
flags.DEFINE_string("data_dir", None,
                    "Directory (or file) holding the data of non-embedded "
                    "datasets: text8/text8.zip, a tfds data_dir or a .npz.")
flags.DEFINE_integer("seq_len", 250, "Text chunk length (characters).", lower_bound=2)
flags.DEFINE_enum("patch_size", "16", ["16", "32"], "photos: patch width and height.")
flags.DEFINE_float("ce_weight", 0.001, "Weight of the cross-entropy auxiliary term.",
                   lower_bound=0.0)
flags.DEFINE_enum("objective", "ardm", config_lib.OBJECTIVES,
                  "Training objective: the order-agnostic ARDM, or T-step "
                  "absorbing discrete diffusion (D3PM) with the same network.")
flags.DEFINE_integer("diffusion_steps", None, "T, the number of steps of "
                     "--objective=absorbing.", lower_bound=1)
flags.DEFINE_integer("sigma_seed", 0, "Seed of the fixed order used for exact "
                     "likelihoods and coding.", lower_bound=0)
# The model (spec §3, §6). `--model` names an export in the other commands,
# hence --model_type.
flags.DEFINE_enum("model_type", "oa", ["oa", "upscale"],
                  "oa: order-agnostic ARDM; upscale: coarse-to-fine Upscale ARDM.")
flags.DEFINE_integer("branching", 4, "Upscale branching factor b: each stage adds "
                     "one base-b digit; K must be a power of b.", lower_bound=2)
flags.DEFINE_enum("transition", "zero_lsb", transitions.NAMES,
                  "Upscale transition: zero_lsb (zero the least significant "
                  "digits), augment (coarse values as new classes) or text8 "
                  "(letters -> vowel/consonant; text8 data only).")
flags.DEFINE_enum("parametrization", "data", transitions.PARAMETRIZATIONS,
                  "Upscale output: data (a distribution over the K data values, "
                  "pushed down to each stage) or direct (S*b digit logits).")
# Image U-Net (spec §7.1-7.2).
flags.DEFINE_integer("channels", 256, "U-Net channels.", lower_bound=8)
flags.DEFINE_integer("num_res_blocks", 32, "ResBlocks on each side of the U-Net.",
                     lower_bound=0)
flags.DEFINE_bool("attention_every_block", False,
                  "Self-attention after every ResBlock (the released config); "
                  "the middle attention block is always present.")
flags.DEFINE_integer("num_heads", 1, "Attention heads.", lower_bound=1)
flags.DEFINE_float("dropout", 0.0, "Dropout rate.", lower_bound=0.0, upper_bound=0.9)
# Text Transformer (spec §7.3).
flags.DEFINE_integer("num_layers", 12, "Transformer layers.", lower_bound=1)
flags.DEFINE_integer("dim", 768, "Transformer width.", lower_bound=8)
flags.DEFINE_integer("mlp_dim", 3072, "Transformer MLP width.", lower_bound=8)
flags.DEFINE_enum("position_bias", "none", ["none", "alibi"],
                  "Transformer attention bias: none (the reference) or alibi "
                  "(fixed distance penalties; learns faster at small scale).")

flags.register_validator("channels", lambda c: c % 4 == 0,
                         "--channels must be a multiple of 4")
flags.register_multi_flags_validator(
    ["dim", "num_heads"], lambda f: f["dim"] % f["num_heads"] == 0,
    "--dim must be a multiple of --num_heads")
flags.register_multi_flags_validator(
    ["objective", "diffusion_steps"],
    lambda f: f["objective"] != "absorbing" or f["diffusion_steps"] is not None,
    "--objective=absorbing needs --diffusion_steps=T")
flags.register_multi_flags_validator(
    ["objective", "diffusion_steps"],
    lambda f: f["objective"] == "absorbing" or f["diffusion_steps"] is None,
    "--diffusion_steps applies to --objective=absorbing only")

FLAGS = flags.FLAGS


def load_data():
  """Loads the dataset named by the flags."""
  return datasets.load(FLAGS.dataset, FLAGS.data_dir, FLAGS.seq_len,
                       int(FLAGS.patch_size))


def config_from_flags(data):
  """A ModelConfig for `data` with the network sized by the flags.

  Raises UserError when the Upscale transition does not fit the data.
  """
  upscale = {}
  if FLAGS.model_type == "upscale":
    upscale = dict(model_type="upscale", branching=FLAGS.branching,
                   transition=FLAGS.transition, parametrization=FLAGS.parametrization)
  if data.kind == "image":
    network, kwargs = "unet", dict(
        channels=FLAGS.channels, num_res_blocks=FLAGS.num_res_blocks,
        attention_every_block=FLAGS.attention_every_block,
        num_heads=FLAGS.num_heads, dropout=FLAGS.dropout)
  else:
    network, kwargs = "transformer", dict(
        num_layers=FLAGS.num_layers, dim=FLAGS.dim, num_heads=FLAGS.num_heads,
        mlp_dim=FLAGS.mlp_dim, dropout=FLAGS.dropout,
        position_bias=FLAGS.position_bias)
  return ModelConfig(dataset=data.name, kind=data.kind, shape=list(data.shape),
                     num_classes=data.num_classes, network=network,
                     network_kwargs=kwargs, ce_weight=FLAGS.ce_weight,
                     sigma_seed=FLAGS.sigma_seed, objective=FLAGS.objective,
                     diffusion_steps=FLAGS.diffusion_steps, **upscale)
