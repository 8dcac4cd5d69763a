r"""Evaluates a trained model (a checkpoint or a SavedModel) on held-out data.

  python -m tf_ardm.evaluate --checkpoint=runs/digits/model
  python -m tf_ardm.evaluate --model=runs/digits/export --budgets=1,2,4,8,16,32,64

Reports the stochastic ELBO averaged over --passes passes (spec §3.5) with its
standard error, the exact negative log-likelihood under one fixed order (the
sum over all D steps), and optionally bits/dim against the generation budget.
Any network is also scored as T-step absorbing diffusion for --diffusion_steps
(and for the T it was trained with, if trained with --objective=absorbing).
"""
from absl import flags
import numpy as np

from tf_ardm import checkpoints
from tf_ardm import cli
from tf_ardm import errors
from tf_ardm import evaluation
from tf_ardm import model_source
from tf_ardm import servable as servable_lib

flags.DEFINE_string("data_dir", None, "Data location for non-embedded datasets.")
flags.DEFINE_enum("split", "test", ["train", "valid", "test"], "Split to evaluate.")
flags.DEFINE_integer("passes", 4, "ELBO passes over the split.", lower_bound=1)
flags.DEFINE_integer("batch_size", 200, "Evaluation batch size.", lower_bound=1)
flags.DEFINE_integer("seed", 0, "Seed of the ELBO's orders and times.", lower_bound=0)
flags.DEFINE_bool("exact_nll", True, "Also compute the exact fixed-order NLL "
                  "(D network calls per batch).")
flags.DEFINE_integer("limit", None, "Evaluate only the first N datapoints.",
                     lower_bound=1)
flags.DEFINE_list("budgets", [], "Budgets for a bits/dim-against-budget table, "
                  "e.g. 1,2,4,8,16,32,64; 'powers' means 1, 2, 4, ..., D.")
flags.DEFINE_string("plot", None, "PNG path for the plot of bits/dim against budget.")
flags.DEFINE_list("diffusion_steps", [], "Also report the T-step absorbing-"
                  "diffusion ELBO of the network for these T, e.g. 64,1000 (a "
                  "model trained with --objective=absorbing always reports its T).")
flags.register_validator(
    "diffusion_steps", lambda v: all(s.isdigit() and int(s) >= 1 for s in v),
    "--diffusion_steps must be integers >= 1")
flags.DEFINE_bool("loss_components", False, "Estimate the per-step loss "
                  "components on --split and store them with the --checkpoint.")
flags.DEFINE_integer("samples_per_step", 16, "Datapoints per step for "
                     "--loss_components.", lower_bound=1)

FLAGS = flags.FLAGS


def main(argv):
  del argv
  if FLAGS.plot:
    errors.check_writable(FLAGS.plot, "--plot")
  if FLAGS.loss_components and FLAGS.checkpoint:
    errors.check_writable(FLAGS.checkpoint, "--checkpoint")
  scorer, config = model_source.load()
  x = evaluation.load_split(config, FLAGS.split, FLAGS.data_dir, FLAGS.limit)
  d = config.num_steps
  mean, se = evaluation.elbo(scorer, x, evaluation.stage_policy(config, np.arange(d)),
                             FLAGS.passes, FLAGS.batch_size, FLAGS.seed)
  unit = "bits/char" if config.kind == "text" else "bits/dim"
  stages = f", {config.num_stages} stages" if config.num_stages > 1 else ""
  print(f"{config.dataset} {FLAGS.split}: {len(x)} datapoints, D = {d}{stages}")
  print(f"ELBO ({FLAGS.passes} passes): {mean:.4f} ± {se:.4f} {unit}")
  trained_steps = [config.diffusion_steps] if config.objective == "absorbing" else []
  for steps in sorted(set(trained_steps + [int(s) for s in FLAGS.diffusion_steps])):
    mean, se = evaluation.absorbing_elbo(scorer, x, steps, FLAGS.passes,
                                         FLAGS.batch_size, FLAGS.seed)
    print(f"absorbing-diffusion ELBO, T = {steps} ({FLAGS.passes} passes): "
          f"{mean:.4f} ± {se:.4f} {unit}")
  if FLAGS.exact_nll:
    nll = evaluation.exact_nll(scorer, x, d, FLAGS.batch_size)
    print(f"exact NLL, fixed order ({d * config.num_stages} steps): {nll:.4f} {unit}")
  if FLAGS.loss_components:
    if not FLAGS.checkpoint:
      raise cli.UserError("--loss_components stores its estimate with the model: "
                          "give --checkpoint (then re-export)")
    trained = checkpoints.restore(FLAGS.checkpoint)
    trained.heldout_loss_components = evaluation.heldout_loss_components(
        scorer, x, config.total_steps, FLAGS.samples_per_step, FLAGS.batch_size,
        FLAGS.seed)
    checkpoints.save(trained, FLAGS.checkpoint)
    print(f"held-out loss components ({FLAGS.samples_per_step} samples/step, sum "
          f"{trained.heldout_loss_components.sum():.4f} {unit}) saved to "
          f"{FLAGS.checkpoint}")
    scorer = servable_lib.Servable(trained)
  if FLAGS.budgets:
    budgets = evaluation.budget_list(FLAGS.budgets, d)
    rows = evaluation.budget_table(scorer, config, x, budgets, FLAGS.passes,
                                   FLAGS.batch_size, FLAGS.seed)
    print(evaluation.format_budget_table(rows, unit))
    if FLAGS.plot:
      evaluation.plot_budget_table(FLAGS.plot, rows, f"{config.dataset} {FLAGS.split}",
                                   unit)
      print(f"plot: {FLAGS.plot}")


if __name__ == "__main__":
  cli.run(main)
