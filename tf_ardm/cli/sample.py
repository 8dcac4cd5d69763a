r"""Samples from a trained model under a generation budget, or infills data.

  python -m tf_ardm.sample --model=runs/digits/export --budget=16 --num=64 \
      --seed=0 --out=samples.png
  python -m tf_ardm.sample --model=runs/digits/export --budget=16 \
      --infill=digits.npy --known=top_half --out=infill.png

--model is a trained model directory or an export. Images are written as a
PNG grid (default samples.png), text as a text file with one sample per line
(default samples.txt).
For infilling, --infill holds data [N, *shape] (.npy) and --known says which
positions are given: top_half, or a .npy mask of 0/1 of shape [*shape] or
[N, *shape]. The grid then shows the masked input next to the completion, and
-log2 p(x_unknown | x_known) of the given data is printed.
"""
import os

import time

import numpy as np
import tensorflow as tf

from tf_ardm import atomic
from tf_ardm import errors
from tf_ardm.cli import app
from tf_ardm.cli import flags
from tf_ardm.data import datasets
from tf_ardm.data import validation
from tf_ardm.errors import UserError
from tf_ardm.evaluation import images
from tf_ardm.generation import policies
from tf_ardm.serving import servable

FLAGS = flags.FLAGS


def _load_npy(path, what):
  if not os.path.isfile(path):
    raise UserError(f"{what} file {path} does not exist")
  try:
    return np.load(path, allow_pickle=False)
  except (ValueError, OSError, EOFError) as e:
    raise UserError(f"{path} is not a valid .npy file: {e}") from e


def infill_mask(spec, x, config):
  """The known mask int32 [N, *shape] for --known=spec and data x [N, *shape]."""
  shape = tuple(config.shape)
  if spec == "top_half":
    mask = np.zeros(shape, np.int32)
    mask[:shape[0] // 2] = 1
  else:
    mask = _load_npy(spec, "--known")
  if mask.shape not in (shape, x.shape):
    raise UserError(f"--known mask has shape {mask.shape}; expected {shape} "
                        f"or {x.shape}")
  if not np.isin(mask, (0, 1)).all():
    raise UserError("--known mask must contain only 0 and 1")
  return np.broadcast_to(mask, x.shape).astype(np.int32)


def check_data(x, config):
  """--infill data as int32 [N, *shape] (one datapoint [*shape] is N = 1);
  UserError for a wrong shape, dtype or value range."""
  if x.ndim == len(config.shape):
    x = x[None]
  return validation.check_datapoints(x, config.shape, config.num_classes, "--infill")


def write(path, x, config):
  """Writes samples [N, *shape], atomically: a PNG grid for images, text lines otherwise."""
  if config.kind == "image":
    images.save_grid(path, x, config.num_classes)
  else:
    with atomic.file(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
      f.write("\n".join(datasets.decode_text(s, config) for s in x) + "\n")


def output_path(out, config):
  """--out, or its default for the model's kind; UserError for a PNG of text."""
  if out is None:
    return "samples.png" if config.kind == "image" else "samples.txt"
  if config.kind == "text" and out.lower().endswith(".png"):
    raise UserError(f"--out={out}: a text model's samples are text; give a text "
                    "file such as samples.txt")
  return out


def main(argv):
  del argv
  if FLAGS.out:
    errors.check_writable(FLAGS.out, "--out")
  infill = None if FLAGS.infill is None else _load_npy(FLAGS.infill, "--infill")
  scorer, config = servable.load(flags.model_path())
  out_path = output_path(FLAGS.out, config)
  errors.check_writable(out_path, "--out")
  d = config.num_steps
  budget = FLAGS.budget or d
  if budget > d:
    raise UserError(f"--budget={budget} exceeds D = {d}")
  seed = tf.constant(FLAGS.seed)
  start = time.monotonic()
  if infill is None:
    x = scorer.sample(num=tf.constant(FLAGS.num), budget=tf.constant(budget),
                      seed=seed)["samples"].numpy()
    write(out_path, x, config)
    print(f"wrote {len(x)} samples ({budget * config.num_stages} network calls) "
          f"to {out_path}")
    if FLAGS.verbose:
      policy = scorer.policy(budget=tf.constant(budget)).numpy().tolist()
      kind = ("DP policy" if policies.is_tabulated(d, budget) else
              f"naive policy (budget not tabulated for D > {policies.MAX_FULL_TABLE})")
      print(f"{kind} (left boundaries per stage): {policy}; "
            f"{time.monotonic() - start:.2f} s")
    return
  x = check_data(infill, config)
  known = infill_mask(FLAGS.known, x, config)
  unknown = (known == 0).reshape(len(x), -1).sum(1).min()
  if budget > unknown:
    raise UserError(f"--budget={budget} exceeds the {unknown} unknown positions")
  out = scorer.infill(x=tf.constant(x), known=tf.constant(known),
                      budget=tf.constant(budget), seed=seed)
  filled = out["samples"].numpy()
  assert np.array_equal(filled[known == 1], x[known == 1])
  masked = np.where(known == 1, x, config.absorbing if config.kind == "text" else 0)
  write(out_path, np.concatenate([masked, filled]) if config.kind == "image"
        else filled, config)
  bits = out["conditional_bits"].numpy()
  print(f"infilled {len(x)} datapoints ({budget * config.num_stages} network calls) "
        f"to {out_path}; "
        f"-log2 p(x_unknown | x_known) = {bits.mean():.2f} bits "
        f"({bits.sum() / max((known == 0).sum(), 1):.4f} bits per unknown dim)")


def run():
  app.run(main, "sample")
