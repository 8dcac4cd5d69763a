"""Every absl flag of the commands, each defined once with one meaning.

The commands share this one definition, so that they can be imported
together (tests and scripts do). A command names the flags it takes when it
runs (`tf_ardm.cli.app.run`); its `--help` lists exactly those, and any other
flag on its command line is an error. Library code never reads these flags:
the functions below turn them into explicit arguments and typed configs.

Validators only check values; they never touch the file system.
"""
from absl import flags

from tf_ardm import transitions
from tf_ardm import config as config_lib
from tf_ardm.config import ModelConfig
from tf_ardm.data import datasets
from tf_ardm.errors import UserError
from tf_ardm.training import config as train_config_lib
from tf_ardm.training import strategies

FLAGS = flags.FLAGS

# --- Which model a command uses ----------------------------------------------
flags.DEFINE_string(
    "model", None, "The trained model: its model directory (<workdir>/model), an "
    "export root (<export_dir>, holding serving/ and codec/) or one of its "
    "SavedModels. (--checkpoint is accepted as its former name.)")
flags.DEFINE_bool("verbose", False, "Print more (also -v): sizes, policies, "
                  "network calls and timings; train logs at INFO level.")

# --- Data --------------------------------------------------------------------
flags.DEFINE_enum("dataset", "digits", datasets.NAMES, "Dataset to train on.")
flags.DEFINE_string("data_dir", None,
                    "Directory (or file) holding the data of non-embedded "
                    "datasets: text8/text8.zip, a tfds data_dir or a .npz.")
flags.DEFINE_integer("seq_len", 250, "Text chunk length (characters).", lower_bound=2)
flags.DEFINE_enum("patch_size", "16", ["16", "32"], "photos: patch width and height.")

# --- The model (spec §3, §6, §7) ---------------------------------------------
flags.DEFINE_float("ce_weight", 0.001, "Weight of the cross-entropy auxiliary term.",
                   lower_bound=0.0)
flags.DEFINE_enum("objective", "ardm", config_lib.OBJECTIVES,
                  "Training objective: the order-agnostic ARDM, or T-step "
                  "absorbing discrete diffusion (D3PM) with the same network.")
flags.DEFINE_list("diffusion_steps", [], "T of absorbing diffusion. train: the T "
                  "of --objective=absorbing (one value); evaluate: also score the "
                  "network as T-step absorbing diffusion for each T, e.g. 64,1000 "
                  "(a model trained with --objective=absorbing always reports its T).")
flags.DEFINE_integer("sigma_seed", 0, "Seed of the fixed order used for exact "
                     "likelihoods and coding.", lower_bound=0)
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
flags.DEFINE_enum("output_distribution", "categorical", config_lib.OUTPUT_DISTRIBUTIONS,
                  "What the network predicts for each value: categorical (K "
                  "logits) or logistic_mixture (--num_mixtures discretized "
                  "logistics over the K ordered values; images only).")
flags.DEFINE_integer("num_mixtures", 10, "Components of --output_distribution="
                     "logistic_mixture.", lower_bound=1)
flags.DEFINE_integer("channels", 256, "U-Net channels.", lower_bound=8)
flags.DEFINE_integer("num_res_blocks", 32, "ResBlocks on each side of the U-Net.",
                     lower_bound=0)
flags.DEFINE_bool("attention_every_block", False,
                  "Self-attention after every ResBlock (the released config); "
                  "the middle attention block is always present.")
flags.DEFINE_integer("num_heads", 1, "Attention heads.", lower_bound=1)
flags.DEFINE_float("dropout", 0.0, "Dropout rate.", lower_bound=0.0, upper_bound=0.9)
flags.DEFINE_integer("num_layers", 12, "Transformer layers.", lower_bound=1)
flags.DEFINE_integer("dim", 768, "Transformer width.", lower_bound=8)
flags.DEFINE_integer("mlp_dim", 3072, "Transformer MLP width.", lower_bound=8)
flags.DEFINE_enum("position_bias", "none", ["none", "alibi"],
                  "Transformer attention bias: none (the reference) or alibi "
                  "(fixed distance penalties; learns faster at small scale).")

# --- Training (spec §8) --------------------------------------------------------
flags.DEFINE_string("workdir", "runs/digits", "Training directory: backups, "
                    "TensorBoard logs and the trained model (<workdir>/model).")
flags.DEFINE_string("init_from", None, "train: warm start, a trained model directory or an "
                    "export of the same model config whose EMA weights start the run "
                    "(the optimizer and the step count start afresh; a resumed run keeps "
                    "its backup's weights).")
flags.DEFINE_string("export_dir", None, "Export root: <export_dir>/serving/<version> "
                    "and <export_dir>/codec (train: default <workdir>/export).")
flags.DEFINE_enum("strategy", "mirrored", strategies.NAMES,
                  "tf.distribute strategy: mirrored (all local GPUs, or the "
                  "CPU), multi_worker (TF_CONFIG), one_device (a single GPU or "
                  "the CPU) or tpu.")
flags.DEFINE_string("tpu", None, "--strategy=tpu: the TPU's name or grpc:// "
                    "address (default: the TPU VM's own TPU).")
flags.DEFINE_integer("batch_size", 64, "Global training batch size.", lower_bound=1)
flags.DEFINE_integer("train_steps", 10000, "Total optimizer steps.", lower_bound=1)
flags.DEFINE_bool("export", True, "Write the SavedModel exports after training.")
flags.DEFINE_integer("steps_per_epoch", 500, "Steps between evaluations and "
                     "summaries.", lower_bound=1)
flags.DEFINE_integer("checkpoint_every", 100, "Steps between backups of the "
                     "training state in <workdir>/backup: a kill loses fewer "
                     "steps; SIGTERM backs up at once.", lower_bound=1)
flags.DEFINE_enum("optimizer", "adam", train_config_lib.OPTIMIZERS, "Optimizer.")
flags.DEFINE_float("learning_rate", 1e-4, "Peak learning rate.", lower_bound=0.0)
flags.DEFINE_integer("warmup_steps", 0, "Linear LR warm-up steps.", lower_bound=0)
flags.DEFINE_enum("lr_schedule", "constant", train_config_lib.SCHEDULES,
                  "Learning rate after the warm-up: constant, or cosine decay to 0 "
                  "at --train_steps.")
flags.DEFINE_float("beta1", 0.9, "Adam beta1.", lower_bound=0.0, upper_bound=1.0)
flags.DEFINE_float("beta2", 0.999, "Adam beta2.", lower_bound=0.0, upper_bound=1.0)
flags.DEFINE_float("weight_decay", 0.0, "AdamW decoupled weight decay.", lower_bound=0.0)
flags.DEFINE_float("clip_norm", 100.0, "Global-norm gradient clipping (0: none).",
                   lower_bound=0.0)
flags.DEFINE_float("ema_decay", 0.9999, "EMA decay of the evaluation weights.",
                   lower_bound=0.0, upper_bound=1.0)
flags.DEFINE_bool("augment", False, "Image augmentation: random flip and 90° rotations.")
flags.DEFINE_integer("eval_batch_size", 200, "Evaluation batch size.", lower_bound=1)
flags.DEFINE_integer("sample_budget", 64, "Network calls for TensorBoard samples.",
                     lower_bound=1)
flags.DEFINE_bool("jit_compile", None, "Compile the train step with XLA (default: where a "
                 "GPU trains; on a CPU the plain step is faster).")
flags.DEFINE_enum("precision", "auto", [*train_config_lib.PRECISIONS, "auto"],
                  "What the training network computes in: float32, or mixed bfloat16 "
                  "(CPU with AMX or AVX512-BF16, GPU) or float16 (GPU, with loss scaling); "
                  "variables, logits, the loss and the EMA weights stay float32. auto: "
                  "bfloat16 where the devices compute it natively, else float32.")
flags.DEFINE_float("max_train_minutes", None, "Stop training after this much "
                   "wall-clock time after the first (compiling) step; then save "
                   "and export as usual.", lower_bound=0.0)
flags.DEFINE_integer("seed", 0, "Seed of the command's random draws: train: the "
                     "initial weights, data order, orders and times; evaluate: "
                     "the ELBO's orders and times; sample: the samples.",
                     lower_bound=0)
flags.DEFINE_bool("deterministic", False, "TF op determinism (deterministic "
                  "kernels, no parallel-interleave nondeterminism): two runs "
                  "with the same flags give bitwise-identical weights.")

# --- Evaluation ----------------------------------------------------------------
flags.DEFINE_enum("split", "test", ["train", "valid", "test"], "Split to evaluate.")
flags.DEFINE_integer("passes", 4, "ELBO passes over the split.", lower_bound=1)
flags.DEFINE_bool("exact_nll", True, "Also compute the exact fixed-order NLL "
                  "(D network calls per batch).")
flags.DEFINE_integer("limit", None, "Evaluate only the first N datapoints.",
                     lower_bound=1)
flags.DEFINE_list("budgets", [], "Budgets for a bits/dim-against-budget table, "
                  "e.g. 1,2,4,8,16,32,64; 'powers' means 1, 2, 4, ..., D.")
flags.DEFINE_string("plot", None, "PNG path for the plot of bits/dim against budget.")
flags.DEFINE_bool("loss_components", False, "Estimate the per-step loss "
                  "components on --split and store them with the model "
                  "(--model must be a trained model directory; re-export after).")
flags.DEFINE_integer("samples_per_step", 16, "Datapoints per step for "
                     "--loss_components.", lower_bound=1)

# --- Generation and coding -----------------------------------------------------
flags.DEFINE_integer("budget", None, "Network calls per datapoint and stage (an "
                     "Upscale model makes S times as many), in [1, D]; default: "
                     "D for sample, min(D, 100) for compress.", lower_bound=1)
flags.DEFINE_integer("num", 64, "Number of samples.", lower_bound=1, upper_bound=100000)
flags.DEFINE_string("out", None, "Output file: a PNG grid for image models "
                    "(default samples.png), text lines for text models (default "
                    "samples.txt).")
flags.DEFINE_string("infill", None, ".npy data [N, *shape] to complete.")
flags.DEFINE_string("known", "top_half", "top_half, or a .npy 0/1 mask of known positions.")
flags.DEFINE_bool("normalize", False, "Map text to the a-z/space alphabet first "
                  "(lossy: decompression gives the normalised text).")
flags.DEFINE_bool("overwrite", False, "Replace an existing OUT.")

# --- Export ----------------------------------------------------------------------
flags.DEFINE_integer("version", 1, "Servable version: <export_dir>/serving/<version>.",
                     lower_bound=1)
flags.DEFINE_integer("max_batch", None, "Codec: at most this many datapoints per "
                     "network call (default: about 16384 positions' worth); streams do "
                     "not depend on it.", lower_bound=1)

flags.register_validator("channels", lambda c: c % 4 == 0,
                         "--channels must be a multiple of 4")
flags.register_validator(
    "diffusion_steps", lambda v: all(s.isdigit() and int(s) >= 1 for s in v),
    "--diffusion_steps must be integers >= 1")
flags.register_multi_flags_validator(
    ["dim", "num_heads"], lambda f: f["dim"] % f["num_heads"] == 0,
    "--dim must be a multiple of --num_heads")

# The flags of each command, in the order its --help lists them.
DATA = ["dataset", "data_dir", "seq_len", "patch_size"]
MODEL = ["objective", "diffusion_steps", "ce_weight", "sigma_seed", "model_type",
         "branching", "transition", "parametrization", "output_distribution",
         "num_mixtures", "channels", "num_res_blocks",
         "attention_every_block", "num_heads", "dropout", "num_layers", "dim",
         "mlp_dim", "position_bias"]
TRAINING = ["workdir", "export_dir", "init_from", "strategy", "tpu", "batch_size",
            "train_steps", "export", "steps_per_epoch", "checkpoint_every", "optimizer",
            "learning_rate", "warmup_steps", "lr_schedule", "beta1", "beta2", "weight_decay",
            "clip_norm", "ema_decay", "augment", "eval_batch_size", "sample_budget",
            "jit_compile", "precision", "max_train_minutes", "seed", "deterministic"]
COMMANDS = {
    "train": DATA + MODEL + TRAINING + ["verbose"],
    "evaluate": ["model", "data_dir", "split", "limit", "passes", "eval_batch_size",
                 "seed", "exact_nll", "budgets", "plot", "diffusion_steps",
                 "loss_components", "samples_per_step", "verbose"],
    "sample": ["model", "budget", "num", "seed", "out", "infill", "known", "verbose"],
    "compress": ["model", "budget", "normalize", "overwrite", "verbose"],
    "decompress": ["model", "overwrite", "verbose"],
    "export": ["model", "export_dir", "version", "max_batch", "data_dir", "verbose"],
    "demo": ["workdir", "passes", "verbose"],
}


def diffusion_steps():
  """--diffusion_steps as ints."""
  return [int(s) for s in FLAGS.diffusion_steps]


def load_data():
  """The training dataset named by the data flags."""
  return datasets.load(FLAGS.dataset, FLAGS.data_dir, FLAGS.seq_len, int(FLAGS.patch_size))


def model_config(data):
  """The ModelConfig for `data` with the network sized by the model flags.

  Raises UserError when the flags do not fit together or the data.
  """
  steps = diffusion_steps()
  if FLAGS.objective == "absorbing" and len(steps) != 1:
    raise UserError("--objective=absorbing needs --diffusion_steps=T (one value)")
  if FLAGS.objective != "absorbing" and steps:
    raise UserError("--diffusion_steps applies to --objective=absorbing only")
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
                     diffusion_steps=steps[0] if steps else None,
                     output_distribution=FLAGS.output_distribution,
                     num_mixtures=(FLAGS.num_mixtures
                                   if FLAGS.output_distribution == "logistic_mixture" else 0),
                     **upscale)


def train_config():
  """The TrainConfig of the training flags."""
  names = [f.name for f in train_config_lib.TrainConfig.__dataclass_fields__.values()]
  return train_config_lib.TrainConfig(**{name: FLAGS[name].value for name in names})


def model_path(what="a trained model directory or an export"):
  """--model; UserError when it is not given."""
  if not FLAGS.model:
    raise UserError(f"give --model, {what}")
  return FLAGS.model
