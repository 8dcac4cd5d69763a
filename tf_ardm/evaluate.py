r"""Evaluates a trained model (a checkpoint or a SavedModel) on held-out data.

  python -m tf_ardm.evaluate --checkpoint=runs/digits/model
  python -m tf_ardm.evaluate --model=runs/digits/export --budgets=1,2,4,8,16,32,64

Reports the stochastic ELBO averaged over --passes passes (spec §3.5) with its
standard error, the exact negative log-likelihood under one fixed order (the
sum over all D steps), and optionally bits/dim against the generation budget.
"""
import math

from absl import flags
import numpy as np
import tensorflow as tf

from tf_ardm import checkpoints
from tf_ardm import cli
from tf_ardm import servable as servable_lib
from tf_ardm.data import datasets

flags.DEFINE_string("checkpoint", None, "Trained model directory (<workdir>/model).")
flags.DEFINE_string("model", None, "SavedModel export directory.")
flags.DEFINE_string("data_dir", None, "Data location for non-embedded datasets.")
flags.DEFINE_enum("split", "test", ["train", "valid", "test"], "Split to evaluate.")
flags.DEFINE_integer("passes", 4, "ELBO passes over the split.", lower_bound=1)
flags.DEFINE_integer("batch_size", 200, "Evaluation batch size.", lower_bound=1)
flags.DEFINE_integer("seed", 0, "Seed of the ELBO's orders and times.", lower_bound=0)
flags.DEFINE_bool("exact_nll", True, "Also compute the exact fixed-order NLL "
                  "(D network calls per batch).")
flags.DEFINE_integer("limit", None, "Evaluate only the first N datapoints.",
                     lower_bound=1)
flags.register_multi_flags_validator(
    ["checkpoint", "model"], lambda f: (f["checkpoint"] is None) != (f["model"] is None),
    "give exactly one of --checkpoint and --model")

FLAGS = flags.FLAGS


def load_scorer(checkpoint=None, model=None):
  """(scorer, config): the servable functions of a checkpoint or an export."""
  if checkpoint:
    trained = checkpoints.restore(checkpoint)
    return servable_lib.Servable(trained), trained.config
  return servable_lib.load(model)


def _batches(x, batch_size):
  for start in range(0, len(x), batch_size):
    yield tf.constant(x[start:start + batch_size], tf.int32)


def elbo(scorer, x, policy, passes=4, batch_size=200, seed=0):
  """ELBO of the parallel model with `policy` over `passes` passes.

  Returns:
    (mean, standard error) in bits/dim (positive: the negative ELBO). The
    standard error is that of the mean of the N * passes one-sample
    estimates.
  """
  policy = tf.constant(policy, tf.int32)
  values = []
  for p in range(passes):
    for i, batch in enumerate(_batches(x, batch_size)):
      out = scorer.elbo(x=batch, policy=policy, seed=tf.constant(seed * 100003 + p * 1009 + i))
      values.append(-out["elbo_bpd"].numpy())
  values = np.concatenate(values)
  return float(values.mean()), float(values.std(ddof=1) / math.sqrt(len(values)))


def exact_nll(scorer, x, budget, batch_size=200):
  """Exact -log2 p(x | sigma, policy) in bits/dim under the fixed order."""
  bits = [scorer.log_prob(x=batch, budget=tf.constant(budget))["bits_per_dim"].numpy()
          for batch in _batches(x, batch_size)]
  return float(np.concatenate(bits).mean())


def load_split(config, split, data_dir=None, limit=None):
  """The `split` of the model's dataset, int32 [N, *shape]."""
  seq_len = config.shape[0] if config.kind == "text" else 250
  data = datasets.load(config.dataset, data_dir, seq_len)
  if split not in data.splits:
    raise cli.UserError(f"{config.dataset} has no {split} split")
  return data.splits[split][:limit]


def main(argv):
  del argv
  scorer, config = load_scorer(FLAGS.checkpoint, FLAGS.model)
  x = load_split(config, FLAGS.split, FLAGS.data_dir, FLAGS.limit)
  d = config.num_steps
  mean, se = elbo(scorer, x, np.arange(d), FLAGS.passes, FLAGS.batch_size, FLAGS.seed)
  unit = "bits/char" if config.kind == "text" else "bits/dim"
  print(f"{config.dataset} {FLAGS.split}: {len(x)} datapoints, D = {d}")
  print(f"ELBO ({FLAGS.passes} passes): {mean:.4f} ± {se:.4f} {unit}")
  if FLAGS.exact_nll:
    nll = exact_nll(scorer, x, d, FLAGS.batch_size)
    print(f"exact NLL, fixed order ({d} steps): {nll:.4f} {unit}")


if __name__ == "__main__":
  cli.run(main)
