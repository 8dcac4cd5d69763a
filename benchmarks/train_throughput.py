r"""Training throughput per config, precision and compiler, against the machine.

  .venv/bin/python benchmarks/train_throughput.py [--steps=30] \
      [--configs=configs/digits.cfg,configs/text.cfg] \
      [--precisions=float32,bfloat16] [--jit=off,on]

For each config, precision (--precision of tf_ardm.train) and XLA setting
(--jit_compile): ms per train step and examples/s after warm-up, the FLOPs
of one train step (TF's graph profiler on the traced float32 step: forward,
backward and optimizer), the achieved FLOP/s, and its fraction of this
machine's dense matmul FLOP/s in that precision, measured in the same run
(float16 runs against the float16 matmul rate). Run it alone: the machine's
other load lowers every number. Prefix `taskset -c 0` for one core.
"""
import dataclasses
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

flags.DEFINE_integer("steps", 30, "Timed train steps per row.", lower_bound=1)
flags.DEFINE_list("configs", ["configs/digits.cfg", "configs/text.cfg"], "Flagfiles.")
flags.DEFINE_list("precisions", ["float32", "bfloat16"], "Training precisions.")
flags.DEFINE_list("jit", ["off", "on"], "XLA settings of the train step: off, on.")
FLAGS = flags.FLAGS


def matmul_flops_per_second(dtype, n=2048, repeats=20):
  """Dense matmul FLOP/s of this machine in `dtype` (every core it may use)."""
  a = tf.cast(tf.random.normal([n, n]), dtype)
  b = tf.cast(tf.random.normal([n, n]), dtype)
  mm = tf.function(tf.matmul)
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


def load(flagfile):
  """(Dataset, ModelConfig, TrainConfig) of a flagfile, read by the command layer's flags."""
  FLAGS.unparse_flags()
  FLAGS([sys.argv[0], f"--flagfile={flagfile}"])
  data = model_flags.load_data()
  return data, model_flags.model_config(data), model_flags.train_config()


def seconds_per_step(data, config, train_config, steps):
  """Wall seconds of one train step of `fit`, after compiling and warm-up."""
  model = loop.build_model(config, train_config, tf.distribute.get_strategy())
  ds = pipeline.train_dataset(data, train_config.batch_size, train_config.seed)
  model.fit(ds, steps_per_epoch=3, epochs=1, verbose=0)
  start = time.perf_counter()
  model.fit(ds, steps_per_epoch=steps, epochs=1, verbose=0)
  return (time.perf_counter() - start) / steps


def main(argv):
  del argv
  # load() re-parses the flags from each flagfile: read this benchmark's first.
  configs, steps = list(FLAGS.configs), FLAGS.steps
  precisions, jits = list(FLAGS.precisions), list(FLAGS.jit)
  for jit in jits:
    if jit not in ("on", "off"):
      raise app.UsageError(f"--jit takes on and off, not {jit!r}")
  dtypes = {"float32": tf.float32, "bfloat16": tf.bfloat16, "float16": tf.float16}
  for precision in precisions:
    if precision not in dtypes:
      raise app.UsageError(f"--precisions takes {', '.join(dtypes)}, not {precision!r}")
  peaks = {p: matmul_flops_per_second(dtypes[p]) for p in precisions}
  rows = []
  for flagfile in configs:
    data, config, train_config = load(flagfile)
    model = loop.build_model(config, train_config, tf.distribute.get_strategy())
    flops = step_flops(model, next(iter(pipeline.train_dataset(
        data, train_config.batch_size, train_config.seed))))
    for precision in precisions:
      for jit in jits:
        run_config = dataclasses.replace(train_config, precision=precision,
                                         jit_compile=jit == "on")
        seconds = seconds_per_step(data, config, run_config, steps)
        rows.append((os.path.basename(flagfile), train_config.batch_size, precision, jit,
                     seconds, flops))
  print("\ndense matmul (2048^2): " + ", ".join(
      f"{p} {peaks[p] / 1e9:.1f} GFLOP/s" for p in precisions))
  print(f"{'config':<16}{'batch':>6}{'precision':>10}{'XLA':>5}{'ms/step':>9}"
        f"{'examples/s':>12}{'GFLOP/step':>12}{'GFLOP/s':>9}{'vs matmul':>11}")
  for name, batch, precision, jit, seconds, flops in rows:
    achieved = flops / seconds
    print(f"{name:<16}{batch:>6}{precision:>10}{jit:>5}{seconds * 1e3:>9.1f}"
          f"{batch / seconds:>12.1f}{flops / 1e9:>12.2f}{achieved / 1e9:>9.1f}"
          f"{achieved / peaks[precision]:>11.2f}")


if __name__ == "__main__":
  app.run(main)
