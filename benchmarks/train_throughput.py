r"""Training throughput for the digits and text configs, and achieved FLOP/s.

  .venv/bin/python benchmarks/train_throughput.py [--steps=30]

For each config: examples/s of the compiled train step (after warm-up), the
FLOPs of one train step (TF's graph profiler on the traced step: forward,
backward and optimizer), the achieved FLOP/s, and its ratio to this machine's
dense float32 matmul FLOP/s measured in the same run.
"""
import os
import sys
import time

from absl import app
from absl import flags
import tensorflow as tf
from tensorflow.python.profiler import model_analyzer  # pylint: disable=g-direct-tensorflow-import
from tensorflow.python.profiler import option_builder  # pylint: disable=g-direct-tensorflow-import

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from tf_ardm.cli import flags as model_flags  # pylint: disable=g-import-not-at-top,wrong-import-position
from tf_ardm.data import pipeline  # pylint: disable=g-import-not-at-top,wrong-import-position
from tf_ardm.training import loop  # pylint: disable=g-import-not-at-top,wrong-import-position

flags.DEFINE_integer("steps", 30, "Timed train steps per config.", lower_bound=1)
flags.DEFINE_list("configs", ["configs/digits.cfg", "configs/text.cfg"], "Flagfiles.")
FLAGS = flags.FLAGS


def matmul_flops_per_second(n=2048, repeats=20):
  """Dense float32 matmul FLOP/s of this machine (all cores)."""
  a = tf.random.normal([n, n])
  b = tf.random.normal([n, n])
  mm = tf.function(lambda a, b: tf.matmul(a, b))
  mm(a, b).numpy()
  start = time.perf_counter()
  for _ in range(repeats):
    c = mm(a, b)
  c.numpy()
  return 2.0 * n**3 * repeats / (time.perf_counter() - start)


def step_flops(model, batch):
  """FLOPs of one traced (non-XLA) train step on `batch`."""
  fn = tf.function(model.train_step).get_concrete_function(batch)
  opts = option_builder.ProfileOptionBuilder.float_operation()
  opts["output"] = "none"
  return model_analyzer.profile(fn.graph, options=opts).total_float_ops


def measure(flagfile, steps):
  """(ModelConfig, batch size, seconds per step, FLOPs per step) of a flagfile's run."""
  FLAGS.unparse_flags()
  FLAGS([sys.argv[0], f"--flagfile={flagfile}"])  # The command layer's flags read it.
  data = model_flags.load_data()
  config, train_config = model_flags.model_config(data), model_flags.train_config()
  model = loop.build_model(config, train_config, tf.distribute.get_strategy())
  ds = pipeline.train_dataset(data, train_config.batch_size, train_config.seed)
  batch = next(iter(ds))
  flops = step_flops(model, batch)
  model.fit(ds, steps_per_epoch=3, epochs=1, verbose=0)  # Compile and warm up.
  start = time.perf_counter()
  model.fit(ds, steps_per_epoch=steps, epochs=1, verbose=0)
  seconds = (time.perf_counter() - start) / steps
  return config, train_config.batch_size, seconds, flops


def main(argv):
  del argv
  configs, steps = list(FLAGS.configs), FLAGS.steps
  peak = matmul_flops_per_second()
  rows = [measure(c, steps) for c in configs]
  print(f"\ndense float32 matmul (2048^2): {peak / 1e9:.1f} GFLOP/s")
  print(f"{'config':<22}{'batch':>6}{'ms/step':>9}{'examples/s':>12}"
        f"{'GFLOP/step':>12}{'GFLOP/s':>9}{'vs matmul':>11}")
  for flagfile, (config, batch, seconds, flops) in zip(configs, rows):
    achieved = flops / seconds
    print(f"{os.path.basename(flagfile):<22}{batch:>6}{seconds * 1e3:>9.1f}"
          f"{batch / seconds:>12.1f}{flops / 1e9:>12.2f}{achieved / 1e9:>9.1f}"
          f"{achieved / peak:>11.2f}")


if __name__ == "__main__":
  app.run(main)
