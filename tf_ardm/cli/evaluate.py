r"""Evaluates a trained model on held-out data.

  python -m tf_ardm.evaluate --model=runs/digits/model
  python -m tf_ardm.evaluate --model=runs/digits/export --budgets=1,2,4,8,16,32,64

--model is a trained model directory or an export. Reports the negative ELBO
averaged over --passes passes (spec §3.5) with its standard error, the exact
negative log-likelihood under the model's fixed order (the sum over all D
steps), and optionally bits/dim against the generation budget: the DP policy
(computed here from the model's loss components, for every budget), the
naive policy and the DP's prediction. Any network is also scored as T-step
absorbing diffusion for --diffusion_steps (and for the T it was trained with,
if trained with --objective=absorbing). All figures are code lengths: bits
per dimension (per character for text), lower is better.
"""
import numpy as np

from tf_ardm import errors
from tf_ardm.cli import app
from tf_ardm.cli import flags
from tf_ardm.data import datasets
from tf_ardm.evaluation import likelihoods
from tf_ardm.models import checkpoints
from tf_ardm.serving import servable

FLAGS = flags.FLAGS


def main(argv):
  del argv
  if FLAGS.plot:
    errors.check_writable(FLAGS.plot, "--plot")
  model = flags.model_path()
  if FLAGS.loss_components:
    errors.check(checkpoints.is_model_dir(model),
                 "--loss_components stores its estimate with the model: give "
                 "--model=<workdir>/model, a trained model directory (then re-export)")
    errors.check_writable(model, "--model")
  scorer, config = servable.load(model)
  x = datasets.split(config, FLAGS.split, FLAGS.data_dir, FLAGS.limit)
  d, batch, seed = config.num_steps, FLAGS.eval_batch_size, FLAGS.seed
  mean, se = likelihoods.negative_elbo(
      scorer, x, likelihoods.every_stage(config, np.arange(d)), FLAGS.passes, batch, seed)
  unit = likelihoods.unit(config)
  stages = f", {config.num_stages} stages" if config.num_stages > 1 else ""
  print(f"{config.dataset} {FLAGS.split}: {len(x)} datapoints, D = {d}{stages}")
  print(f"negative ELBO ({FLAGS.passes} passes): {mean:.4f} ± {se:.4f} {unit}")
  trained_steps = [config.diffusion_steps] if config.objective == "absorbing" else []
  for steps in sorted(set(trained_steps + flags.diffusion_steps())):
    mean, se = likelihoods.absorbing_negative_elbo(scorer, x, steps, FLAGS.passes,
                                                   batch, seed)
    print(f"absorbing-diffusion negative ELBO, T = {steps} ({FLAGS.passes} passes): "
          f"{mean:.4f} ± {se:.4f} {unit}")
  if FLAGS.exact_nll:
    nll = likelihoods.exact_nll(scorer, x, d, batch)
    print(f"exact NLL, fixed order ({d * config.num_stages} steps): {nll:.4f} {unit}")
  if FLAGS.loss_components:
    trained = checkpoints.restore(model)
    trained.heldout_loss_components = likelihoods.heldout_loss_components(
        scorer, x, config.total_steps, FLAGS.samples_per_step, batch, seed)
    checkpoints.save(trained, model)
    print(f"held-out loss components ({FLAGS.samples_per_step} samples/step, sum "
          f"{trained.heldout_loss_components.sum():.4f} {unit}) saved to {model}")
    scorer = servable.Servable(trained)
  if FLAGS.budgets:
    budgets = likelihoods.budget_list(FLAGS.budgets, d)
    rows = likelihoods.budget_table(scorer, config, x, budgets, FLAGS.passes, batch, seed)
    print(likelihoods.format_budget_table(rows, unit))
    if FLAGS.verbose:
      for row in rows:
        print(f"budget {row['budget']}: DP policy {row['policy']}")
    if FLAGS.plot:
      likelihoods.plot_budget_table(FLAGS.plot, rows, f"{config.dataset} {FLAGS.split}",
                                    unit)
      print(f"plot: {FLAGS.plot}")


def run():
  app.run(main, "evaluate")
