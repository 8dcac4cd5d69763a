r"""Bits/dim against network calls: ARDM with DP policies vs absorbing diffusion.

  .venv/bin/python benchmarks/steps_vs_bits.py --train_seconds=270 \
      [--configs=configs/digits.cfg,configs/text.cfg] [--passes=16]

For each flagfile it trains two networks for the same wall-clock time, at the
same time (so that both see the same CPU load): one with the ARDM objective
and one as T-step absorbing diffusion (--train_diffusion_steps), each with
`python -m tf_ardm.train --flagfile=<config>`, so the model and optimizer
flags are the config's (one epoch, so no evaluation pauses in training; the
clock starts after the first, compiling, step). Then every network is scored on the test split:

  ARDM, DP policy, budget k       k network calls (spec §4.2-4.3; the policy
                                  comes from the network's tracked per-step
                                  losses, which both objectives record)
  absorbing diffusion, T steps    a step costs a call only if it unmasks
                                  something: calls = the number of distinct
                                  masking times, measured by running the
                                  sampler (mean over --samples samples), next
                                  to its expectation T (1 - (1 - 1/T)^D)

Bits/dim are one-call ELBO estimates averaged over --passes passes (± one
standard error); 'predicted' is the DP cost of the policy, and for absorbing
diffusion the closed-form T-step loss from the same per-step losses
(tf_ardm.models.absorbing.expected_loss). It prints one table, the paper's
two ordering checks, and writes a PNG per config to --out.
"""
import os
import sys
import time

from absl import app
from absl import flags
import numpy as np
import tensorflow as tf

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import equal_time  # pylint: disable=g-import-not-at-top,wrong-import-position
from tf_ardm.models import checkpoints  # pylint: disable=g-import-not-at-top,wrong-import-position
from tf_ardm.generation import dynamic_programming as dp  # pylint: disable=g-import-not-at-top,wrong-import-position
from tf_ardm.data import datasets  # pylint: disable=g-import-not-at-top,wrong-import-position
from tf_ardm.evaluation import likelihoods  # pylint: disable=g-import-not-at-top,wrong-import-position
from tf_ardm.evaluation import plots  # pylint: disable=g-import-not-at-top,wrong-import-position
from tf_ardm.serving import servable  # pylint: disable=g-import-not-at-top,wrong-import-position
from tf_ardm.models import absorbing  # pylint: disable=g-import-not-at-top,wrong-import-position

flags.DEFINE_list("configs", ["configs/digits.cfg", "configs/text.cfg"],
                  "Flagfiles of the datasets (model and training flags).")
flags.DEFINE_float("train_seconds", 270.0, "Training wall clock per network.",
                   lower_bound=1.0)
flags.DEFINE_integer("train_diffusion_steps", 1000, "T of the absorbing-trained "
                     "network.", lower_bound=1)
flags.DEFINE_list("budgets", ["10", "20", "50", "D"], "ARDM budgets ('D' = all steps).")
flags.DEFINE_list("diffusion_steps", ["10", "20", "50", "256", "1000"],
                  "T of the absorbing-diffusion rows.")
flags.DEFINE_integer("passes", 16, "ELBO passes over the test split.", lower_bound=1)
flags.DEFINE_integer("samples", 100, "Samples per T for measuring network calls.",
                     lower_bound=2)
flags.DEFINE_integer("limit", None, "Score only the first N test datapoints.",
                     lower_bound=2)
flags.DEFINE_string("workdir", "runs/steps_vs_bits", "Where the networks are trained.")
flags.DEFINE_bool("reuse", False, "Score the networks already in --workdir "
                  "instead of training them.")
flags.DEFINE_string("out", "benchmarks/results", "Where the PNG plots go.")
FLAGS = flags.FLAGS


def score(model_dir):
  """(model, rows (method, k or T, calls, expected calls, bpd, se, predicted), N)."""
  model = checkpoints.restore(model_dir)
  x = datasets.split(model.config, "test", limit=FLAGS.limit)
  scorer = servable.Servable(model)
  d = model.num_steps
  components = model.loss_tracker.loss_components().numpy()
  rows = []
  for budget in sorted({d if b == "D" else min(int(b), d) for b in FLAGS.budgets}):
    policy = scorer.policy(budget=tf.constant(budget)).numpy()
    mean, se = likelihoods.negative_elbo(scorer, x, policy, FLAGS.passes)
    rows.append(("ARDM, DP policy", budget, budget, budget, mean, se,
                 dp.policy_cost(np.sort(components)[::-1], policy)))
  for steps in [int(s) for s in FLAGS.diffusion_steps]:
    mean, se = likelihoods.absorbing_negative_elbo(scorer, x, steps, FLAGS.passes)
    calls = scorer.absorbing_sample(num=tf.constant(FLAGS.samples),
                                    diffusion_steps=tf.constant(steps),
                                    seed=tf.constant(0))["calls"].numpy()
    rows.append(("absorbing diffusion", steps, calls.mean(),
                 absorbing.expected_calls(d, steps), mean, se,
                 absorbing.expected_loss(components, steps)))
  return model, rows, len(x)


def compare(rows, a, b):
  """'a - b = diff ± se' for two (method, steps) keys of rows."""
  by_key = {(r[0], r[1]): r for r in rows}
  ra, rb = by_key[a], by_key[b]
  diff, se = ra[4] - rb[4], float(np.hypot(ra[5], rb[5]))
  verdict = ("better" if diff < -2 * se else "worse" if diff > 2 * se
             else "equal within 2 s.e.")
  return f"{diff:+.4f} ± {se:.4f} ({verdict})"


def main(argv):
  del argv
  os.makedirs(FLAGS.out, exist_ok=True)
  table = []
  for config_path in FLAGS.configs:
    name = os.path.splitext(os.path.basename(config_path))[0]
    workdir = os.path.join(FLAGS.workdir, name)
    os.makedirs(workdir, exist_ok=True)
    start = time.time()
    if FLAGS.reuse:
      dirs = {o: os.path.join(workdir, o, "model") for o in ("ardm", "absorbing")}
    else:
      dirs = equal_time.train({
          "ardm": (config_path, ["--objective=ardm"]),
          "absorbing": (config_path, ["--objective=absorbing",
                                      f"--diffusion_steps={FLAGS.train_diffusion_steps}"])},
          workdir, FLAGS.train_seconds / 60)
    print(f"{name}: trained both networks in {time.time() - start:.0f} s of wall clock "
          f"({FLAGS.train_seconds:.0f} s each, concurrently)", flush=True)
    series = []
    for objective, model_dir in dirs.items():
      model, rows, n = score(model_dir)
      config = model.config
      label = f"{objective}-trained ({model.trained_steps} steps)"
      for method in ("ARDM, DP policy", "absorbing diffusion"):
        chosen = [r for r in rows if r[0] == method]
        series.append((f"{method}, {label}", [r[4] for r in chosen], [r[2] for r in chosen]))
      d = config.num_steps
      checks = (compare(rows, ("ARDM, DP policy", 20), ("absorbing diffusion", 20)),
                compare(rows, ("ARDM, DP policy", d), ("absorbing diffusion", 1000)))
      table.append((name, n, d, label, rows, checks))
    unit = "bits/char" if config.kind == "text" else "bits/dim"
    path = os.path.join(FLAGS.out, f"steps_vs_bits_{name}.png")
    plots.save_line_plot(path, series, "network calls", unit,
                         title=f"{name} test, {FLAGS.train_seconds:.0f} s of training each",
                         logx=True)
    print(f"plot: {path}", flush=True)
  print(f"\n{'data':<7} {'network':<34} {'method':<20} {'k or T':>6} {'calls':>7} "
        f"{'E[calls]':>8} {'bits/dim':>17} {'predicted':>9}")
  for name, n, d, label, rows, _ in table:
    for method, steps, calls, expected, mean, se, predicted in rows:
      print(f"{name:<7} {label:<34} {method:<20} {steps:>6} {calls:>7.1f} {expected:>8.1f} "
            f"{mean:>8.4f} ± {se:.4f} {predicted:>9.4f}")
  print()
  for name, n, d, label, rows, checks in table:
    print(f"{name} ({n} test datapoints, D = {d}), {label}:\n"
          f"  ARDM-DP at 20 calls - absorbing at T = 20:   {checks[0]}\n"
          f"  ARDM at D = {d} calls - absorbing at T = 1000: {checks[1]}")


if __name__ == "__main__":
  app.run(main)
