r"""OA against Upscale-4 and Upscale-2 on `photos`, at equal wall-clock training.

  .venv/bin/python benchmarks/upscale.py --minutes=8
  .venv/bin/python benchmarks/upscale.py --minutes=35 --pin \
      --configs=configs/photos_oa.cfg,configs/photos_upscale4.cfg \
      --extra_flags="--output_distribution=logistic_mixture --num_mixtures=10"

Trains all configs at the same time (benchmarks/equal_time.py), each for
--minutes of wall-clock time after its first step (same network, optimiser
and batch; XLA compilation excluded), so that all see the same CPU load,
then scores the 16x16 test patches with each model's EMA weights:
the ELBO (bits/dim, ± s.e. over --passes passes) at full budget (D calls per
stage) and with the DP policy at each of --budgets calls per stage. The same
test patches are then coded with the lossless image codecs of
tf_ardm.evaluation.baselines (PNG, WebP, JPEG-XL, JPEG-LS, JPEG 2000, QOI),
per patch and tiled into one image, and with the general-purpose
compressors; their ratio is to the best model's full-budget ELBO.
--extra_flags go to every run's training command (e.g. another output
distribution); --pin gives each run a CPU core of its own (taskset), where
there are as many cores as runs.
"""
import os
import sys

from absl import app
from absl import flags
import numpy as np
import tensorflow as tf

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import equal_time  # pylint: disable=g-import-not-at-top,wrong-import-position
from tf_ardm.evaluation import baselines  # pylint: disable=g-import-not-at-top,wrong-import-position
from tf_ardm.models import checkpoints  # pylint: disable=g-import-not-at-top,wrong-import-position
from tf_ardm.data import datasets  # pylint: disable=g-import-not-at-top,wrong-import-position
from tf_ardm.evaluation import likelihoods  # pylint: disable=g-import-not-at-top,wrong-import-position
from tf_ardm.serving import servable  # pylint: disable=g-import-not-at-top,wrong-import-position

flags.DEFINE_float("minutes", 8.0, "Wall-clock training time per model.", lower_bound=0.1)
flags.DEFINE_list("configs", ["configs/photos_oa.cfg", "configs/photos_upscale4.cfg",
                              "configs/photos_upscale2.cfg"], "Flagfiles to compare.")
flags.DEFINE_list("budgets", ["8", "32", "128", "384"], "Network calls per stage.")
flags.DEFINE_integer("passes", 2, "ELBO passes over the test patches.", lower_bound=1)
flags.DEFINE_string("out", "runs/upscale_benchmark", "Work directory.")
flags.DEFINE_string("extra_flags", "", "Training flags for every run, space separated.")
flags.DEFINE_bool("pin", False, "Pin each run to its own CPU core (needs a core per run).")

FLAGS = flags.FLAGS


def score(model, x, budgets, passes):
  """Full-budget ELBO and DP-policy ELBOs, bits/dim: (mean, se), [(mean, se)]."""
  config = model.config
  scorer = servable.Servable(model)
  full = likelihoods.negative_elbo(scorer, x, likelihoods.every_stage(
      config, np.arange(config.num_steps)), passes, seed=1)
  at_budget = [likelihoods.negative_elbo(scorer, x, scorer.policy(budget=tf.constant(b)).numpy(),
                                         passes, seed=1) for b in budgets]
  return full, at_budget


def main(argv):
  del argv
  minutes, configs, passes, out = FLAGS.minutes, FLAGS.configs, FLAGS.passes, FLAGS.out
  budgets = [int(b) for b in FLAGS.budgets]
  os.makedirs(out, exist_ok=True)
  names = [os.path.splitext(os.path.basename(flagfile))[0] for flagfile in configs]
  extra = FLAGS.extra_flags.split()
  cpus = None
  if FLAGS.pin:
    if len(names) > os.cpu_count():
      raise app.UsageError(f"--pin needs a core per run: {len(names)} runs, "
                           f"{os.cpu_count()} cores")
    cpus = {name: i for i, name in enumerate(names)}
  dirs = equal_time.train({name: (flagfile, extra) for name, flagfile in zip(names, configs)},
                          out, minutes, cpus=cpus)
  results = []
  for name in names:
    model = checkpoints.restore(dirs[name])
    steps, seconds = model.trained_steps, 60 * minutes
    test = datasets.split(model.config, "test")
    full, at_budget = score(model, test, budgets, passes)
    per_stage = np.reshape(model.loss_tracker.loss_components().numpy(),
                           [model.config.num_stages, -1]).sum(1)
    results.append((name, model.config.num_stages, steps, seconds, full, at_budget,
                    per_stage))
    print(f"{name}: {steps} steps in {seconds / 60:.1f} min after compiling, test ELBO "
          f"{full[0]:.3f} ± {full[1]:.3f} bits/dim", flush=True)
  print(f"\nphotos test: {len(test)} patches of {test.shape[1]}x{test.shape[2]}x3, "
        f"K = 256, {minutes:g} min of training per model, {passes} ELBO passes"
        + (f", training flags {FLAGS.extra_flags}" if extra else "") + "\n")
  header = (f"{'model':<20} {'S':>2} {'steps':>6} {'s/step':>6}  {'full budget':>15}  "
            + "  ".join(f"{f'{b}/stage':>15}" for b in budgets))
  print(header + "\n" + "-" * len(header))
  for name, stages, steps, seconds, full, at_budget, _ in results:
    cells = [f"{m:7.3f} ± {se:.3f}" for m, se in [full, *at_budget]]
    print(f"{name:<20} {stages:>2} {steps:>6} {seconds / max(steps - 1, 1):>6.2f}  "
          + "  ".join(f"{c:>15}" for c in cells))
  print("\n(bits/dim, lower is better; a budget is network calls per stage, so an "
        "S-stage model makes S times as many calls)\n")
  print("training loss components summed per stage (bits/dim, coarse to fine):")
  for name, _, _, _, _, _, per_stage in results:
    print(f"  {name:<20} " + " ".join(f"{v:.3f}" for v in per_stage)
          + f"  (total {per_stage.sum():.3f})")
  best = min(r[4][0] for r in results)
  rows = [(f"{r[0]} ELBO, full budget", r[4][0]) for r in results]
  train = datasets.split(model.config, "train")
  rows += [row for row in baselines.table(test, 256, train)
           if row[1] is not None]
  print("\n" + baselines.format_table(rows, reference=best))


if __name__ == "__main__":
  app.run(main)
