r"""Bits/dim against the generation budget for the digits and text models.

  .venv/bin/python benchmarks/budget_curve.py \
      --digits=runs/digits/model --text=runs/text/model [--passes=8]

Each model is a trained model directory (<workdir>/model) or a SavedModel
export. For budgets 1, 2, 4, ..., D it prints the ELBO with the DP policy and
with the naive policy (same random numbers, so the paired difference has a
small standard error) and the DP's predicted cost, then checks that the DP is
no worse than naive beyond 2 standard errors of the difference and that
budget D reproduces the full ELBO. It also writes plots and a PNG of
infilled digits (top half given) to benchmarks/results/, and prints text
chunks with a 50-character blank filled in 10 network calls.
"""
import os
import sys

from absl import app
from absl import flags
import numpy as np
import tensorflow as tf

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from tf_ardm.data import datasets  # pylint: disable=g-import-not-at-top,wrong-import-position
from tf_ardm.evaluation import likelihoods  # pylint: disable=g-import-not-at-top,wrong-import-position
from tf_ardm.evaluation import images  # pylint: disable=g-import-not-at-top,wrong-import-position
from tf_ardm.data import text as text_lib  # pylint: disable=g-import-not-at-top,wrong-import-position
from tf_ardm.serving import servable  # pylint: disable=g-import-not-at-top,wrong-import-position

flags.DEFINE_string("digits", "runs/digits/model",
                    "Digits model (directory or export); empty to skip.")
flags.DEFINE_string("text", "runs/text/model", "Text model (directory or export); empty to skip.")
flags.DEFINE_integer("passes", 8, "ELBO passes over the test split.")
flags.DEFINE_string("out", "benchmarks/results", "Where plots and images go.")
FLAGS = flags.FLAGS


def curve(name, path):
  scorer, config = servable.load(path)
  x = datasets.split(config, "test")
  d = config.num_steps
  budgets = likelihoods.budget_list(["powers"], d)
  rows = likelihoods.budget_table(scorer, config, x, budgets, FLAGS.passes)
  full, full_se = likelihoods.negative_elbo(scorer, x, np.arange(d), FLAGS.passes)
  unit = "bits/char" if config.kind == "text" else "bits/dim"
  print(f"\n{name}: {len(x)} test datapoints, D = {d}, {FLAGS.passes} passes")
  print(likelihoods.format_budget_table(rows, unit))
  worse = [r["budget"] for r in rows if r["dp"] - r["naive"] > 2 * r["diff_se"]]
  last = rows[-1]
  print(f"DP worse than naive beyond 2 s.e. at budgets: {worse or 'none'}")
  print(f"budget D: {last['dp']:.4f} vs full ELBO {full:.4f} ± {full_se:.4f} "
        f"({'same' if abs(last['dp'] - full) < 1e-9 else 'differs'})")
  likelihoods.plot_budget_table(os.path.join(FLAGS.out, f"budget_curve_{name}.png"),
                                rows, f"{name} test", unit)
  return scorer, config, x


def infill_digits(scorer, config, x):
  x = x[:16]
  known = np.zeros_like(x)
  known[:, :4] = 1
  for budget in (4, 32):
    out = scorer.infill(x=tf.constant(x), known=tf.constant(known),
                        budget=tf.constant(budget), seed=tf.constant(0))
    filled = out["samples"].numpy()
    assert np.array_equal(filled[:, :4], x[:, :4]), "known values changed"
    path = os.path.join(FLAGS.out, f"infill_digits_budget{budget}.png")
    shown = np.concatenate([x, np.where(known == 1, x, 0), filled])
    images.save_grid(path, shown, config.num_classes, cols=len(x))
    bits = out["conditional_bits"].numpy()
    print(f"infill budget {budget}: known values kept bit for bit; "
          f"-log2 p(bottom | top) = {bits.mean():.2f} bits per digit; {path} "
          "(rows: originals, top halves, completions)")


def infill_text(scorer, x, start=100, length=50, budget=10):
  """Fills a blank of `length` characters in two test chunks with `budget` calls."""
  x = x[:2]
  known = np.ones_like(x)
  known[:, start:start + length] = 0
  out = scorer.infill(x=tf.constant(x), known=tf.constant(known),
                      budget=tf.constant(budget), seed=tf.constant(0))
  filled = out["samples"].numpy()
  assert np.array_equal(filled[known == 1], x[known == 1]), "known values changed"
  bits = out["conditional_bits"].numpy()
  given = np.where(known == 1, x, text_lib.NUM_CLASSES)
  for row in range(len(x)):
    print(f"\ngiven:    {text_lib.decode(given[row])!r}\n"
          f"filled:   {text_lib.decode(filled[row])!r}\n"
          f"original: {text_lib.decode(x[row])!r}\n"
          f"-log2 p(blank | rest) = {bits[row]:.1f} bits "
          f"({bits[row] / length:.2f} bits/char), known characters kept bit for bit")


def main(argv):
  del argv
  os.makedirs(FLAGS.out, exist_ok=True)
  if FLAGS.digits:
    scorer, config, x = curve("digits", FLAGS.digits)
    infill_digits(scorer, config, x)
  if FLAGS.text:
    scorer, _, x = curve("text", FLAGS.text)
    infill_text(scorer, x)


if __name__ == "__main__":
  app.run(main)
