r"""The main job on the embedded default: `make demo`.

Trains configs/digits.cfg, evaluates the test split, exports the SavedModel,
writes a PNG grid of samples, then prints one table, measured in this run on
the same 360 test images: the model's ELBO (± s.e.) and exact fixed-order
NLL next to PNG, WebP, general-purpose compressors and a per-pixel histogram
model fitted on the training split.
"""
import os
import subprocess
import sys
import time

from absl import flags
import numpy as np
import tensorflow as tf

from tf_ardm import baselines
from tf_ardm import cli
from tf_ardm import evaluation
from tf_ardm import images
from tf_ardm.data import datasets

flags.DEFINE_string("workdir", "runs/demo", "Where the demo trains and exports.")
flags.DEFINE_string("config", "configs/digits.cfg", "Training flagfile.")
flags.DEFINE_integer("passes", 4, "ELBO passes over the test set.", lower_bound=1)

FLAGS = flags.FLAGS


def main(argv):
  del argv
  if not os.path.isfile(FLAGS.config):
    raise cli.UserError(f"{FLAGS.config} not found; run the demo from the "
                        "repository root")
  start = time.time()
  subprocess.run([sys.executable, "-m", "tf_ardm.train", f"--flagfile={FLAGS.config}",
                  f"--workdir={FLAGS.workdir}"], check=True)
  train_minutes = (time.time() - start) / 60
  export_dir = os.path.join(FLAGS.workdir, "export")
  scorer, config = evaluation.load_scorer(model=export_dir)
  data = datasets.load("digits")
  test, train = data.splits["test"], data.splits["train"]
  d = config.num_steps
  elbo, se = evaluation.elbo(scorer, test, np.arange(d), FLAGS.passes, seed=1)
  nll = evaluation.exact_nll(scorer, test, d)
  samples = scorer.sample(num=tf.constant(64), budget=tf.constant(d),
                          seed=tf.constant(0))["samples"].numpy()
  grid_path = os.path.join(FLAGS.workdir, "samples.png")
  images.save_grid(grid_path, samples, config.num_classes)
  rows = [(f"OA-ARDM ELBO ({FLAGS.passes} passes, s.e. {se:.3f})", elbo),
          (f"OA-ARDM exact NLL, fixed order ({d} calls)", nll)]
  rows += [row for row in baselines.table(test, data.num_classes, train)
           if row[1] is not None]
  print(f"\ndigits test set: {len(test)} images of 8x8, K = {data.num_classes}; "
        f"training took {train_minutes:.1f} min")
  print(baselines.format_table(rows, reference=elbo))
  print(f"\nSavedModel: {export_dir}\nsamples: {grid_path}\n"
        f"TensorBoard: tensorboard --logdir {FLAGS.workdir}/tensorboard")


if __name__ == "__main__":
  cli.run(main)
