"""Likelihood evaluation of a trained model on held-out data.

Works with the functions of a `Servable` (a restored checkpoint) or of a
loaded SavedModel export alike (`tf_ardm.serving.servable.load`).

Sign convention: an *ELBO* is a lower bound on log2 p(x) per dimension, so
it is <= 0 (`elbo_values`, the servable's `elbo`); a *negative ELBO*, an NLL
or a loss is a code length in bits/dim, >= 0, lower is better
(`negative_elbo`, `absorbing_negative_elbo`, `exact_nll`, the budget table).
"""
import math

import numpy as np
import tensorflow as tf

from tf_ardm.data import datasets
from tf_ardm.errors import UserError
from tf_ardm.evaluation import plots
from tf_ardm.generation import policies as policies_lib


def unit(config):
  """'bits/byte' for byte models, 'bits/char' for other text models, else 'bits/dim'."""
  if datasets.is_bytes(config):
    return "bits/byte"
  return "bits/char" if config.kind == "text" else "bits/dim"


def every_stage(config, policy):
  """A policy [k] as the model's policy input: [k] for OA, [S, k] for Upscale
  (the same policy in every stage)."""
  policy = np.asarray(policy, np.int32)
  return policy if config.num_stages == 1 else np.tile(policy, [config.num_stages, 1])


def _batches(x, batch_size):
  for start in range(0, len(x), batch_size):
    yield tf.constant(x[start:start + batch_size], tf.int32)


def _estimates(estimate, x, passes, batch_size, seed):
  """estimate(batch, seed) float [b] over `passes` passes of x, concatenated.

  The seeds depend only on (seed, pass, batch), so two estimators run with
  the same seed share their random numbers.
  """
  return np.concatenate([
      estimate(batch, tf.constant(seed * 100003 + p * 1009 + i)).numpy()
      for p in range(passes) for i, batch in enumerate(_batches(x, batch_size))])


def elbo_values(scorer, x, policy, passes=4, batch_size=200, seed=0):
  """One-call ELBO estimates with `policy`, bits/dim float [passes * N] (<= 0)."""
  policy = tf.constant(policy, tf.int32)
  return _estimates(lambda b, s: scorer.elbo(x=b, policy=policy, seed=s)["elbo_bpd"],
                    x, passes, batch_size, seed)


def mean_and_se(values):
  """Mean and standard error of the mean of a 1-D sample."""
  values = np.asarray(values, np.float64)
  return float(values.mean()), float(values.std(ddof=1) / math.sqrt(len(values)))


def negative_elbo(scorer, x, policy, passes=4, batch_size=200, seed=0):
  """Negative ELBO (bits/dim, >= 0) with `policy` over `passes` passes: (mean, s.e.).

  The standard error is that of the mean of the N * passes estimates.
  """
  return mean_and_se(-elbo_values(scorer, x, policy, passes, batch_size, seed))


def absorbing_negative_elbo(scorer, x, diffusion_steps, passes=4, batch_size=200, seed=0):
  """Negative T-step absorbing-diffusion ELBO (bits/dim, >= 0): (mean, s.e.).

  The one-call estimate of tf_ardm.models.absorbing over `passes` passes.
  """
  steps = tf.constant(diffusion_steps, tf.int32)
  return mean_and_se(-_estimates(
      lambda b, s: scorer.absorbing_elbo(x=b, diffusion_steps=steps, seed=s)["elbo_bpd"],
      x, passes, batch_size, seed))


def exact_nll(scorer, x, budget, batch_size=200):
  """Exact -log2 p(x | sigma, policy) in bits/dim under the fixed order."""
  bits = [scorer.log_prob(x=batch, budget=tf.constant(budget))["bits_per_dim"].numpy()
          for batch in _batches(x, batch_size)]
  return float(np.concatenate(bits).mean())


def budget_list(spec, num_steps):
  """Parses --budgets: ints in [1, D], or 'powers' (1, 2, 4, ..., D)."""
  if spec == ["powers"]:
    budgets = [2**i for i in range(num_steps.bit_length()) if 2**i < num_steps]
    return budgets + [num_steps]
  try:
    budgets = [int(b) for b in spec]
  except ValueError as e:
    raise UserError(f"--budgets must be integers or 'powers': {e}") from e
  bad = [b for b in budgets if not 1 <= b <= num_steps]
  if bad:
    raise UserError(f"budgets {bad} are outside [1, D = {num_steps}]")
  return budgets


def budget_table(scorer, config, x, budgets, passes, batch_size=200, seed=0):
  """Negative ELBO (bits/dim) against budget: DP policy, naive policy and the
  DP's prediction.

  The DP policies are computed here from the model's loss components (the
  held-out estimate when present, as the servable's own policies), for every
  budget: the servable tabulates only some budgets when D > 1024 and falls
  back to the naive policy for the others. Both policies are scored with the
  same orders and times (common random numbers), so their difference is
  measured more precisely than either. For an Upscale model a budget is per
  stage (S * budget network calls), the DP runs per stage and its prediction
  is the sum over stages.

  Returns:
    list of dicts with keys budget, policy (int [S, budget] for Upscale,
    [budget] for OA), dp, dp_se, naive, naive_se, predicted and diff_se (the
    standard error of the paired difference dp - naive).
  """
  outputs = scorer.loss_components()
  components = outputs["heldout_loss_components"].numpy()
  if not components.size:
    components = outputs["loss_components"].numpy()
  d = config.num_steps
  optimal, predicted = policies_lib.optimal_stage_policies(components, config.num_stages,
                                                           budgets)
  rows = []
  for budget, policy, cost in zip(budgets, optimal, predicted):
    if budget == d:  # Sequential, as the servable: the DP may repeat tied entries.
      policy = np.tile(np.arange(d, dtype=np.int32), [config.num_stages, 1])
    policy = policy[0] if config.num_stages == 1 else policy
    ours = -elbo_values(scorer, x, policy, passes, batch_size, seed)
    naive_policy = policies_lib.naive_policy(d, budget)
    naive = -elbo_values(scorer, x, every_stage(config, naive_policy), passes,
                         batch_size, seed)
    (mean, se), (naive_mean, naive_se) = mean_and_se(ours), mean_and_se(naive)
    rows.append(dict(budget=budget, policy=policy.tolist(), dp=mean, dp_se=se,
                     naive=naive_mean, naive_se=naive_se, predicted=float(cost),
                     diff_se=mean_and_se(ours - naive)[1]))
  return rows


def format_budget_table(rows, unit="bits/dim"):
  """Renders budget_table rows as text."""
  lines = [f"{'budget':>6}  {'DP policy':>16}  {'naive policy':>16}  "
           f"{'DP - naive':>16}  {'DP predicted':>12}",
           f"{'':>6}  {unit:>16}  {unit:>16}  {unit:>16}  {unit:>12}"]
  for r in rows:
    lines.append(f"{r['budget']:>6}  {r['dp']:>9.4f} ± {r['dp_se']:.4f}  "
                 f"{r['naive']:>9.4f} ± {r['naive_se']:.4f}  "
                 f"{r['dp'] - r['naive']:>+9.4f} ± {r['diff_se']:.4f}  "
                 f"{r['predicted']:>12.4f}")
  return "\n".join(lines)


def plot_budget_table(path, rows, title, unit="bits/dim"):
  """Writes a PNG of bits/dim against budget (log scale) for both policies."""
  budgets = [r["budget"] for r in rows]
  plots.save_line_plot(path, [
      ("DP policy", [r["dp"] for r in rows], budgets),
      ("naive policy", [r["naive"] for r in rows], budgets),
      ("DP predicted", [r["predicted"] for r in rows], budgets)],
      "budget (network calls)", unit, title=title, logx=True)


def heldout_loss_components(scorer, x, num_steps, samples_per_step,
                            batch_size=200, seed=0):
  """Per-step losses (bits/dim) estimated on held-out x, float32 [D].

  Each step t is scored on `samples_per_step` datapoints (cycling through
  x) with a fresh random order each.
  """
  t = np.repeat(np.arange(num_steps, dtype=np.int32), samples_per_step)
  index = np.arange(len(t)) % len(x)
  losses = []
  for i, start in enumerate(range(0, len(t), batch_size)):
    sl = slice(start, start + batch_size)
    out = scorer.step_loss(x=tf.constant(x[index[sl]]), t=tf.constant(t[sl]),
                           seed=tf.constant(seed * 100003 + i))
    losses.append(out["loss_bpd"].numpy())
  return np.concatenate(losses).reshape(num_steps, samples_per_step).mean(1)
