r"""The main job on the embedded default: `make demo` (python -m tf_ardm.cli.demo).

Trains configs/digits.cfg into --workdir (runs/digits, as in the README's
examples), evaluates the test split, writes a PNG grid of samples, then
prints one table, measured in this run on the same 360 test images: the
model's negative ELBO (± s.e.) and exact fixed-order NLL next to PNG, WebP,
general-purpose compressors and a per-pixel histogram model fitted on the
training split. All figures are bits/dim; lower is better. Re-running it
resumes or reuses the training in --workdir.
"""
import os
import subprocess
import sys
import time

import numpy as np
import tensorflow as tf

from tf_ardm.cli import app
from tf_ardm.cli import flags
from tf_ardm.data import datasets
from tf_ardm.errors import UserError
from tf_ardm.evaluation import baselines
from tf_ardm.evaluation import images
from tf_ardm.evaluation import likelihoods
from tf_ardm.serving import servable

FLAGS = flags.FLAGS
CONFIG = "configs/digits.cfg"


def main(argv):
  del argv
  if not os.path.isfile(CONFIG):
    raise UserError(f"{CONFIG} not found; run the demo from the repository root")
  start = time.time()
  subprocess.run([sys.executable, "-m", "tf_ardm.train", f"--flagfile={CONFIG}",
                  f"--workdir={FLAGS.workdir}"] + ["-v"] * FLAGS.verbose, check=True)
  train_minutes = (time.time() - start) / 60
  export_dir = os.path.join(FLAGS.workdir, "export")
  scorer, config = servable.load(export_dir)
  data = datasets.load("digits")
  test, train = data.splits["test"], data.splits["train"]
  d = config.num_steps
  elbo, se = likelihoods.negative_elbo(scorer, test, np.arange(d), FLAGS.passes, seed=1)
  nll = likelihoods.exact_nll(scorer, test, d)
  samples = scorer.sample(num=tf.constant(64), budget=tf.constant(d),
                          seed=tf.constant(0))["samples"].numpy()
  grid_path = os.path.join(FLAGS.workdir, "samples.png")
  images.save_grid(grid_path, samples, config.num_classes)
  rows = [(f"OA-ARDM negative ELBO ({FLAGS.passes} passes, s.e. {se:.3f})", elbo),
          (f"OA-ARDM exact NLL, fixed order ({d} calls)", nll)]
  rows += [row for row in baselines.table(test, data.num_classes, train)
           if row[1] is not None]
  print(f"\ndigits test set: {len(test)} images of 8x8, K = {data.num_classes}; "
        f"training took {train_minutes:.1f} min")
  print(baselines.format_table(rows, reference=elbo))
  print(f"\nmodel: {FLAGS.workdir}/model\nexports: {export_dir}\nsamples: {grid_path}\n"
        f"TensorBoard: tensorboard --logdir {FLAGS.workdir}/tensorboard")


if __name__ == "__main__":
  app.run(main, "demo")
