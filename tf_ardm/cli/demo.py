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


def paths(workdir):
  """What the demo writes under `workdir`: the trained model, the export root
  (as train writes it by default) and the PNG grid of samples."""
  return dict(model=os.path.join(workdir, "model"), export=os.path.join(workdir, "export"),
              samples=os.path.join(workdir, "samples.png"))


def main(argv):
  del argv
  if not os.path.isfile(CONFIG):
    raise UserError(f"{CONFIG} not found; run the demo from the repository root")
  start = time.time()
  train = subprocess.run([sys.executable, "-m", "tf_ardm.train", f"--flagfile={CONFIG}",
                          f"--workdir={FLAGS.workdir}"] + ["-v"] * FLAGS.verbose)
  if train.returncode:
    sys.exit(train.returncode)  # train has printed why.
  train_minutes = (time.time() - start) / 60
  out = paths(FLAGS.workdir)
  scorer, config = servable.load(out["export"])
  data = datasets.load("digits")
  test, train = data.splits["test"], data.splits["train"]
  d = config.num_steps
  elbo, se = likelihoods.negative_elbo(scorer, test, np.arange(d), FLAGS.passes, seed=1)
  nll = likelihoods.exact_nll(scorer, test, d)
  samples = scorer.sample(num=tf.constant(64), budget=tf.constant(d),
                          seed=tf.constant(0))["samples"].numpy()
  images.save_grid(out["samples"], samples, config.num_classes)
  rows = [(f"OA-ARDM negative ELBO ({FLAGS.passes} passes, s.e. {se:.3f})", elbo),
          (f"OA-ARDM exact NLL, fixed order ({d} calls)", nll)]
  rows += [row for row in baselines.table(test, data.num_classes, train)
           if row[1] is not None]
  print(f"\ndigits test set: {len(test)} images of 8x8, K = {data.num_classes}; "
        f"training took {train_minutes:.1f} min")
  print(baselines.format_table(rows, reference=elbo))
  print(f"\nmodel: {out['model']}\nexports: {out['export']}\nsamples: {out['samples']}\n"
        f"TensorBoard: tensorboard --logdir {os.path.join(FLAGS.workdir, 'tensorboard')}")


if __name__ == "__main__":
  app.run(main, "demo")
