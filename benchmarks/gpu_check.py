r"""GPU check: CIFAR-10 throughput, CPU-GPU training agreement, codec across devices.

On the machine with the GPU (same repository and .venv, no network needed):

  .venv/bin/python benchmarks/gpu_check.py --out=$OUT

Expected wall time 4-6 minutes on one H200 with 16 CPU cores (an estimate:
the XLA compilation of the CIFAR-10 network, 1-3 minutes per precision, is
the least known part); --max_minutes=7.5 bounds it: a job that has not
started by then is skipped, a running one is stopped, and both are recorded.
Everything goes under --out (the package's flag of that name, here the
results directory): gpu_check.json (every number, the devices, the errors,
each worker's raw result) and one directory per job with its log.

To check the script end to end on a CPU, with tiny sizes, the "GPU" side
being this CPU again (labelled as such; about 6 minutes on a busy 2-core
CPU):

  .venv/bin/python benchmarks/gpu_check.py --smoke --out=/tmp/gpucheck_smoke

Parts (--parts=throughput,train,codec):
  throughput  the configs/cifar10.cfg network (OA-ARDM U-Net, 256 channels,
              32 ResBlocks per side, 32x32x3, K = 256, batch 128) under XLA,
              in float32 (TF32 matmuls and convolutions where TF enables
              them) and mixed bfloat16 (--cifar_precisions). Synthetic
              int32 batches, random values in [0, 256): CIFAR-10 is not on
              the device. Reports ms/step and examples/s over --cifar_steps
              timed steps after a 3-step warm-up `fit` (XLA compilation),
              the FLOPs of one train step (benchmarks/train_throughput.py's
              step_flops, on the traced graph of the first precision), the
              achieved FLOP/s and its fraction of this GPU's dense bfloat16
              and float32 matmul rates, measured in the same process.
  train       the same short run of configs/digits.cfg (embedded data, seed
              0, --check_steps steps in --check_epochs epochs) through
              tf_ardm.training.loop.train, once with the GPU hidden and once
              with it visible. Float reductions run in other orders on the
              two devices (and TF32 on the GPU), so the runs are not bitwise
              equal; the verdict is that they agree: the first step's loss
              within --first_loss_rtol, every epoch's training loss within
              --loss_rtol (relative), the final validation bits/dim within
              --bpd_tolerance (absolute).
  codec       the shipped codec exports (savedmodels/<model>/codec) on the
              first --codec_count test datapoints (benchmarks/portability.py
              prepares them) at --codec_budget, batches --codec_batches, with
              benchmarks/portability_worker.py: on the CPU (GPU hidden,
              direct convolutions, as the Coder picks without a GPU), saving
              its streams; on the GPU (im2col convolutions, as the Coder
              picks with one) decoding the CPU's streams too; optionally on
              the GPU with the integer network under XLA (--codec_gpu_xla);
              and on the CPU again decoding the GPU's streams. Verdict per
              model: byte-identical streams on every side, each side decodes
              its own exactly, and each decodes the other's exactly.

Scheduling: three lanes run at the same time, each one job after the other.
The CPU lane (its processes pinned to the CPUs after the first
--gpu_side_cpus) prepares the codec data, runs the CPU codec workers, the CPU
training and the CPU decodes of the GPU's streams. The GPU lane (pinned to
the first --gpu_side_cpus CPUs) runs the GPU training and the GPU codec
workers. The throughput lane (every CPU, for XLA's parallel compilation)
runs the throughput worker, which builds and compiles while the GPU lane
works; the GPU lane's jobs and the throughput's matmul rates and timed steps
hold a lock file (<out>/gpu.lock), so that nothing else uses the GPU while
it is timed (its warm-up seconds, compilation included, are only
indicative). Every job is a subprocess with a time limit, so that a crash or
a hang in one is recorded and the others go on; this process never uses the
GPU.

The last line is the verdict: PASS (every verdict held), FAIL (one did
not) or INCOMPLETE (none failed, some part could not be judged: a worker
crashed, timed out or was skipped; its error is in the summary and the
JSON). Exit status: 0 for PASS and INCOMPLETE (every part it could run
completed), 1 for FAIL, 2 on bad arguments or when no GPU is visible
without --smoke.
"""
import concurrent.futures
import contextlib
import dataclasses
import fcntl
import gc
import json
import math
import os
import platform
import re
import shutil
import subprocess
import sys
import threading
import time
import traceback
import types

# Before TensorFlow is imported (here, and inherited by every worker).
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_FORCE_GPU_ALLOW_GROWTH", "true")  # Processes share the GPU.

# pylint: disable=g-import-not-at-top,wrong-import-position
from absl import app
from absl import flags
import numpy as np
import tensorflow as tf

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.join(REPO, "benchmarks"))
import portability  # noqa: E402
import portability_worker  # noqa: E402
import train_throughput  # noqa: E402  (defines --steps, --configs, --precisions, --jit)
from tf_ardm.cli import flags as model_flags  # noqa: E402  (defines --out, used here)
from tf_ardm.errors import UserError  # noqa: E402
from tf_ardm.training import loop  # noqa: E402
from tf_ardm.training import strategies  # noqa: E402
# pylint: enable=g-import-not-at-top,wrong-import-position

PARTS = ("throughput", "train", "codec")
CIFAR_CFG = os.path.join(REPO, "configs", "cifar10.cfg")
DIGITS_CFG = os.path.join(REPO, "configs", "digits.cfg")
# What model_flags.model_config reads of a dataset: the CIFAR-10 data itself
# is not needed to build and time its network.
CIFAR = types.SimpleNamespace(name="cifar10", kind="image", shape=[32, 32, 3], num_classes=256)
DTYPES = {"float32": tf.float32, "bfloat16": tf.bfloat16, "float16": tf.float16}
TF_LOG_LINE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+: |[IWEF]\d{4} )")
PROGRESS = "@@progress "  # Prefix of a worker's progress lines, echoed by the check.
MIN_JOB_S = 20  # A job with less time left before --max_minutes is skipped.
# Smoke defaults (flags given on the command line win).
SMOKE = {"cifar_steps": 2, "cifar_batch": 4, "check_steps": 20, "check_epochs": 2,
         "codec_models": ["digits"], "max_minutes": 30.0}
SMOKE_NETWORK = ["--channels=16", "--num_res_blocks=1"]

flags.DEFINE_list("parts", list(PARTS), "Parts to run: throughput, train, codec.")
flags.DEFINE_bool("smoke", False, "Verify the script on a CPU: a tiny CIFAR network "
                  "(16 channels, 1 ResBlock, batch 4), 2 timed steps, 20 train steps, "
                  "the digits codec only; the GPU side is this CPU again.")
flags.DEFINE_integer("cifar_steps", 20, "Timed train steps per precision of the "
                     "CIFAR-10 network.", lower_bound=1)
flags.DEFINE_integer("cifar_batch", None, "Batch size of the CIFAR-10 network "
                     "(default: the config's, 128).", lower_bound=1)
flags.DEFINE_list("cifar_precisions", ["float32", "bfloat16"],
                  "Precisions (tf_ardm.train --precision) of the throughput part.")
flags.DEFINE_integer("check_steps", 600, "Train steps of the digits run on each device "
                     "(the CPU's: an estimated 1-2 minutes on 12 cores).", lower_bound=1)
flags.DEFINE_integer("check_epochs", 3, "Epochs (evaluations) of the digits run.",
                     lower_bound=1)
flags.DEFINE_float("first_loss_rtol", 0.01, "Tolerance of the first step's training "
                   "loss, relative.", lower_bound=0.0)
flags.DEFINE_float("loss_rtol", 0.05, "Tolerance of each epoch's mean training loss, "
                   "relative.", lower_bound=0.0)
flags.DEFINE_float("bpd_tolerance", 0.05, "Tolerance of the final validation "
                   "bits/dim, absolute.", lower_bound=0.0)
flags.DEFINE_list("codec_models", list(portability.MODELS),
                  "Models of savedmodels/ whose codec exports to check.")
flags.DEFINE_integer("codec_count", 8, "Test datapoints per model.", lower_bound=1)
flags.DEFINE_integer("codec_budget", 4, "Network calls per datapoint (and stage).",
                     lower_bound=1)
flags.DEFINE_list("codec_batches", ["1", "7"], "Batch sizes of the codec workers.")
flags.DEFINE_bool("codec_gpu_xla", True, "Also code on the GPU with the integer "
                  "network under XLA (TF_ARDM_XLA=1), after the plain GPU workers.")
flags.DEFINE_integer("gpu_side_cpus", 4, "CPUs of the GPU side's small processes; the "
                     "CPU side gets the others (with fewer than 8 CPUs both get all).",
                     lower_bound=1)
flags.DEFINE_float("max_minutes", 7.5, "Wall-clock limit of the whole check.",
                   lower_bound=0.0)
flags.DEFINE_string("throughput_worker", None, "Internal: run the throughput part in "
                    "this process, writing DIR/result.json.")
flags.DEFINE_string("gpu_lock", None, "Internal: the throughput worker's lock file.")
flags.DEFINE_string("train_worker", None, "Internal: run one digits training in this "
                    "process, in DIR/run, writing DIR/result.json.")
FLAGS = flags.FLAGS


@dataclasses.dataclass(frozen=True)
class Options:
  """The check's settings (the flags of the same names, smoke defaults applied)."""
  out: str
  parts: tuple = PARTS
  smoke: bool = False
  cifar_steps: int = 20
  cifar_batch: int = None
  cifar_precisions: tuple = ("float32", "bfloat16")
  check_steps: int = 600
  check_epochs: int = 3
  first_loss_rtol: float = 0.01
  loss_rtol: float = 0.05
  bpd_tolerance: float = 0.05
  codec_models: tuple = portability.MODELS
  codec_count: int = 8
  codec_budget: int = 4
  codec_batches: tuple = ("1", "7")
  codec_gpu_xla: bool = True
  gpu_side_cpus: int = 4
  max_minutes: float = 7.5


def options_from_flags(values=FLAGS):
  """Options from the parsed flags; with --smoke, SMOKE replaces defaults not given."""
  kwargs = {}
  for field in dataclasses.fields(Options):
    value = values[field.name].value
    if values["smoke"].value and not values[field.name].present and field.name in SMOKE:
      value = SMOKE[field.name]
    kwargs[field.name] = tuple(value) if isinstance(value, list) else value
  return Options(**kwargs)


def check_options(opts):
  """`opts` with codec_batches as ints; UserError naming the first bad setting."""
  if not opts.out:
    raise UserError("give --out, the directory of the results")
  if not opts.parts or set(opts.parts) - set(PARTS):
    raise UserError(f"--parts takes some of {','.join(PARTS)}, not {','.join(opts.parts)!r}")
  for precision in opts.cifar_precisions:
    if precision not in DTYPES:
      raise UserError(f"--cifar_precisions: unknown precision {precision!r}; choose from "
                      f"{', '.join(DTYPES)}")
  if not opts.cifar_precisions and "throughput" in opts.parts:
    raise UserError("--cifar_precisions is empty")
  if opts.check_epochs > opts.check_steps:
    raise UserError(f"--check_epochs={opts.check_epochs} exceeds "
                    f"--check_steps={opts.check_steps}")
  try:
    batches = tuple(int(b) for b in opts.codec_batches)
  except ValueError:
    raise UserError(f"--codec_batches takes integers, not {','.join(opts.codec_batches)!r}"
                    ) from None
  if not batches or min(batches) < 1:
    raise UserError("--codec_batches takes integers >= 1")
  if "codec" in opts.parts:
    if not opts.codec_models:
      raise UserError("--codec_models is empty")
    for model in opts.codec_models:
      portability.codec_dir(os.path.join(REPO, "savedmodels", model))
  if opts.max_minutes <= 0:
    raise UserError("--max_minutes must be positive")
  return dataclasses.replace(opts, codec_batches=batches)


def split_cpus(cpus, gpu_side):
  """(GPU side's CPUs, CPU side's CPUs): the first `gpu_side` and the others.

  With fewer than 8 CPUs, or `gpu_side` not below their number, both sides
  get all of them.
  """
  cpus = tuple(sorted(cpus))
  if len(cpus) < 8 or gpu_side >= len(cpus):
    return cpus, cpus
  return cpus[:gpu_side], cpus[gpu_side:]


def pinned(cpus):
  """The argv prefix that runs a command on `cpus` (taskset), or [] if unavailable."""
  if cpus and shutil.which("taskset"):
    return ["taskset", "-c", ",".join(map(str, cpus))]
  return []


def relative_difference(a, b):
  """|a - b| / max(|a|, |b|), 0 when both are 0; inf when either is not finite."""
  if not (math.isfinite(a) and math.isfinite(b)):
    return math.inf
  scale = max(abs(a), abs(b))
  return abs(a - b) / scale if scale else 0.0


def describe_devices():
  """The machine as a JSON-able dict: TF and CUDA versions, GPUs, CPUs."""
  gpus = []
  for device in tf.config.list_physical_devices("GPU"):
    try:
      details = tf.config.experimental.get_device_details(device)
    except (ValueError, RuntimeError):
      details = {}
    gpus.append({"device": device.name, **{k: list(v) if isinstance(v, tuple) else v
                                            for k, v in details.items()}})
  try:
    build = tf.sysconfig.get_build_info()
  except AttributeError:
    build = {}
  smi = None
  if shutil.which("nvidia-smi"):
    try:
      done = subprocess.run(
          ["nvidia-smi", "--query-gpu=name,driver_version,memory.total,clocks.max.sm,"
           "power.limit", "--format=csv,noheader"], capture_output=True, text=True,
          check=False, timeout=30)
      smi = done.stdout.strip() or done.stderr.strip()
    except (OSError, subprocess.TimeoutExpired) as e:
      smi = f"nvidia-smi failed: {e}"
  return {
      "gpus": gpus, "gpu_names": [g.get("device_name", g["device"]) for g in gpus],
      "nvidia_smi": smi, "tf_version": tf.__version__,
      "tf_git_version": tf.version.GIT_VERSION,
      "cuda_version": build.get("cuda_version"), "cudnn_version": build.get("cudnn_version"),
      "tensor_float_32": tf.config.experimental.tensor_float_32_execution_enabled(),
      "cpu_count": os.cpu_count(), "cpu_affinity": len(os.sched_getaffinity(0)),
      "cpu_model": portability_worker.cpu_model(), "python_version": platform.python_version(),
      "numpy_version": np.__version__}


def sees_gpu(devices):
  """Whether a list of device names holds a GPU."""
  return any(":GPU:" in d for d in devices or ())


@contextlib.contextmanager
def gpu_lock(path):
  """Holds an exclusive lock (flock) on the file `path` for the block; None: no lock.

  The check's small GPU jobs and the throughput worker's timed steps hold it,
  so that no other job shares the GPU while steps are timed.
  """
  if not path:
    yield
    return
  with open(path, "a") as f:
    fcntl.flock(f, fcntl.LOCK_EX)
    try:
      yield
    finally:
      fcntl.flock(f, fcntl.LOCK_UN)


def progress(message):
  """A progress line of a worker, which the check prints with its time."""
  print(f"{PROGRESS}{message}", flush=True)


def _save_json(path, value):
  """Writes `value` as JSON to `path` atomically (NaN and inf as JSON's extensions)."""
  tmp = path + ".tmp"
  with open(tmp, "w") as f:
    json.dump(value, f, indent=1, default=str)
  os.replace(tmp, path)


# ---------------------------------------------------------------- workers ---


def throughput_worker(directory, steps, batch, precisions, smoke, lock=None):
  """The throughput part in this process; writes DIR/result.json as it goes.

  The matmul rates and the timed steps run holding `lock` (gpu_lock), which
  the check's small GPU jobs hold while they run; building, tracing and
  compiling do not wait for it.

  Returns the result dict: device, peaks {precision: matmul FLOP/s},
  matmul_n, network, batch, flops_per_step, lock_wait_s, rows [{precision,
  batch, steps, compile_s, seconds_per_step, loss, peak_gpu_bytes}, or
  {precision, error} for a precision that failed (e.g. out of memory)].
  """
  os.makedirs(directory, exist_ok=True)
  path = os.path.join(directory, "result.json")
  result = {"device": describe_devices(), "config": os.path.relpath(CIFAR_CFG, REPO),
            "smoke": smoke, "peaks": {}, "rows": [], "lock_wait_s": 0.0}
  _save_json(path, result)
  FLAGS([sys.argv[0], f"--flagfile={CIFAR_CFG}", *(SMOKE_NETWORK if smoke else [])])
  config, train_config = model_flags.model_config(CIFAR), model_flags.train_config()
  train_config = dataclasses.replace(train_config, batch_size=batch or train_config.batch_size)
  batch = train_config.batch_size
  result.update(network=config.network_kwargs, batch=batch, precisions=list(precisions))
  # Synthetic data: uint8 pixel values in [0, 256), as int32 like the input pipeline's.
  x = tf.constant(np.random.default_rng(0).integers(0, 256, [batch, *CIFAR.shape],
                                                     np.uint8).astype(np.int32))
  for precision in precisions:
    try:
      row = _time_precision(result, path, config, train_config, precision, x, steps, smoke,
                            lock)
    except Exception as e:  # pylint: disable=broad-except  (e.g. out of GPU memory)
      row = {"precision": precision, "error": f"{type(e).__name__}: {e}"[:500]}
      progress(f"{precision}: failed: {row['error'][:200]}")
    result["rows"].append(row)
    _save_json(path, result)
    tf.keras.backend.clear_session()
    gc.collect()
  return result


def _gpu_memory(reset=False):
  """Peak bytes of GPU 0 since the last reset (None without a GPU); reset: start anew."""
  gpus = tf.config.list_logical_devices("GPU")
  try:
    if reset:
      tf.config.experimental.reset_memory_stats(gpus[0].name)
      return None
    return tf.config.experimental.get_memory_info(gpus[0].name)["peak"]
  except (IndexError, ValueError, tf.errors.OpError):
    return None


def _time_precision(result, path, config, train_config, precision, x, steps, smoke, lock):
  """One precision's row of throughput_worker (it also fills result's FLOPs and peaks)."""
  batch = train_config.batch_size
  ds = tf.data.Dataset.from_tensors(x).repeat()
  progress(f"{precision}: building the network ({config.network_kwargs['channels']} "
           f"channels, {config.network_kwargs['num_res_blocks']} ResBlocks, batch {batch})")
  run_config = dataclasses.replace(train_config, precision=precision, jit_compile=True)
  model = loop.build_model(config, run_config, tf.distribute.get_strategy())
  if "flops_per_step" not in result:
    progress(f"FLOPs of one train step (traced {precision} graph)")
    start = time.perf_counter()
    result["flops_per_step"] = train_throughput.step_flops(model, x)
    result.update(flops_precision=precision, flops_s=time.perf_counter() - start)
    _save_json(path, result)
  _gpu_memory(reset=True)
  progress(f"{precision}: XLA compilation and 3 warm-up steps")
  start = time.perf_counter()
  model.fit(ds, steps_per_epoch=3, epochs=1, verbose=0)
  compile_s = time.perf_counter() - start
  progress(f"{precision}: warm-up took {compile_s:.0f} s; waiting for the GPU to be free")
  start = time.perf_counter()
  with gpu_lock(lock):
    result["lock_wait_s"] += time.perf_counter() - start
    if not result["peaks"]:
      n, repeats = (256, 5) if smoke else (8192, 50)
      result["matmul_n"] = n
      for name in dict.fromkeys(["float32", "bfloat16", *result["precisions"]]):
        progress(f"dense matmul {n}^2 in {name}")
        result["peaks"][name] = train_throughput.matmul_flops_per_second(
            DTYPES[name], n, repeats)
    progress(f"{precision}: {steps} timed steps")
    start = time.perf_counter()
    history = model.fit(ds, steps_per_epoch=steps, epochs=1, verbose=0)
    seconds = (time.perf_counter() - start) / steps
  progress(f"{precision}: {seconds * 1e3:.1f} ms/step")
  return {"precision": precision, "batch": batch, "steps": steps, "compile_s": compile_s,
          "seconds_per_step": seconds, "loss": float(history.history["loss"][-1]),
          "peak_gpu_bytes": _gpu_memory()}


class _Recorder(tf.keras.callbacks.Callback):
  """Logs of the first step and of every epoch, with wall times."""

  def __init__(self, epochs):
    super().__init__()
    self.total_epochs, self.first, self.epochs = epochs, None, []
    self.start = time.perf_counter()

  def on_train_batch_end(self, batch, logs=None):
    if self.first is None:
      self.first = {k: float(v) for k, v in (logs or {}).items()}
      self.first["seconds"] = time.perf_counter() - self.start

  def on_epoch_end(self, epoch, logs=None):
    entry = {"epoch": epoch + 1, **{k: float(v) for k, v in (logs or {}).items()},
             "seconds": time.perf_counter() - self.start}
    self.epochs.append(entry)
    progress(f"epoch {epoch + 1}/{self.total_epochs}: loss {entry.get('loss', math.nan):.4f}, "
             f"validation {entry.get('val_bpd', math.nan):.4f} bits/dim "
             f"({entry['seconds']:.0f} s)")


def train_worker(directory, steps, epochs):
  """One digits training in this process (in DIR/run); writes DIR/result.json.

  Returns the result dict: device, devices (logical), steps,
  steps_per_epoch, first (the first step's logs), epochs [{epoch, loss,
  bpd, nce_bpd, val_loss, val_bpd, val_nce_bpd, seconds}], wall_s.
  """
  workdir = os.path.join(directory, "run")
  shutil.rmtree(workdir, ignore_errors=True)  # A fresh run, never a resumed one.
  os.makedirs(directory, exist_ok=True)
  steps_per_epoch = -(-steps // epochs)
  FLAGS([sys.argv[0], f"--flagfile={DIGITS_CFG}", f"--train_steps={steps}",
         f"--steps_per_epoch={steps_per_epoch}", f"--workdir={workdir}", "--noexport"])
  data = model_flags.load_data()
  config, train_config = model_flags.model_config(data), model_flags.train_config()
  strategy = strategies.build(FLAGS.strategy, FLAGS.tpu)
  progress(f"digits: {steps} steps in epochs of {steps_per_epoch}, seed {train_config.seed}, "
           f"{strategy.num_replicas_in_sync} replica(s), devices "
           f"{[d.name for d in tf.config.list_logical_devices()]}")
  recorder = _Recorder(train_config.epochs)
  start = time.perf_counter()
  model = loop.train(data, config, train_config, workdir, strategy, extra_callbacks=[recorder])
  result = {"device": describe_devices(),
            "devices": [d.name for d in tf.config.list_logical_devices()],
            "steps": int(model.optimizer.iterations.numpy()),
            "steps_per_epoch": steps_per_epoch, "seed": train_config.seed,
            "jit_compile": train_config.jit_compile, "first": recorder.first,
            "epochs": recorder.epochs, "wall_s": time.perf_counter() - start}
  _save_json(os.path.join(directory, "result.json"), result)
  return result


# ---------------------------------------------------------------- verdicts ---


def throughput_summary(result, precisions):
  """Derived numbers of the throughput worker's result.

  Returns {"rows": [{precision, batch, ms_per_step, examples_per_s,
  flops_per_step, flops_per_s, vs_bfloat16_matmul, vs_float32_matmul,
  vs_own_matmul, compile_s, loss, peak_gpu_gib}], "peaks", "missing"
  (precisions without a measurement), "ok", "error"}: ok is None when a
  precision is missing or the worker failed, False when a loss is not
  finite, else True.
  """
  peaks, flops = result.get("peaks", {}), result.get("flops_per_step")
  rows, errors = [], []
  for row in result.get("rows", []):
    if row.get("error"):
      errors.append(f"{row['precision']}: {row['error']}")
      continue
    seconds = row["seconds_per_step"]
    achieved = flops / seconds if flops else None
    def fraction(name, achieved=achieved):
      return achieved / peaks[name] if achieved and peaks.get(name) else None
    rows.append({
        "precision": row["precision"], "batch": row["batch"], "ms_per_step": seconds * 1e3,
        "examples_per_s": row["batch"] / seconds, "flops_per_step": flops,
        "flops_per_s": achieved, "vs_bfloat16_matmul": fraction("bfloat16"),
        "vs_float32_matmul": fraction("float32"), "vs_own_matmul": fraction(row["precision"]),
        "compile_s": row.get("compile_s"), "loss": row.get("loss"),
        "peak_gpu_gib": row["peak_gpu_bytes"] / 2**30 if row.get("peak_gpu_bytes") else None})
  missing = [p for p in precisions if p not in {r["precision"] for r in rows}]
  if any(not math.isfinite(r["loss"]) for r in rows if r["loss"] is not None):
    ok = False
  else:
    ok = None if missing or result.get("error") or errors else True
  error = "; ".join(filter(None, [result.get("error") or result.get("skipped"), *errors]))
  return {"rows": rows, "peaks": peaks, "missing": missing, "ok": ok, "error": error or None}


def train_verdict(cpu, gpu, first_rtol, loss_rtol, bpd_tolerance, expect_gpu):
  """Whether the CPU's and the GPU's digits runs (train_worker results) agree.

  Returns {"ok": True/False, or None when a run has no result, "error",
  "first_loss": {cpu, gpu, rdiff, ok}, "epochs": [{epoch, cpu_loss,
  gpu_loss, loss_rdiff, loss_ok, cpu_val_bpd, gpu_val_bpd, val_bpd_diff}],
  "final_val_bpd": {cpu, gpu, diff, ok}, "devices_ok", "tolerances"}.
  devices_ok: the CPU run saw no GPU, and the GPU run saw one iff expect_gpu.
  """
  out = {"tolerances": {"first_loss_rtol": first_rtol, "loss_rtol": loss_rtol,
                        "bpd_tolerance": bpd_tolerance}}
  for name, r in (("cpu", cpu), ("gpu", gpu)):
    if not r or r.get("error") or r.get("skipped") or not r.get("epochs"):
      why = (r or {}).get("error") or (r or {}).get("skipped") or "no result"
      out.update(ok=None, error=f"{name} run: {why}")
      return out
  a, b = cpu["first"]["loss"], gpu["first"]["loss"]
  out["first_loss"] = {"cpu": a, "gpu": b, "rdiff": relative_difference(a, b),
                       "ok": relative_difference(a, b) <= first_rtol}
  out["epochs"] = []
  for ce, ge in zip(cpu["epochs"], gpu["epochs"]):
    rdiff = relative_difference(ce["loss"], ge["loss"])
    out["epochs"].append({
        "epoch": ce["epoch"], "cpu_loss": ce["loss"], "gpu_loss": ge["loss"],
        "loss_rdiff": rdiff, "loss_ok": rdiff <= loss_rtol,
        "cpu_val_bpd": ce.get("val_bpd"), "gpu_val_bpd": ge.get("val_bpd"),
        "val_bpd_diff": abs(ce.get("val_bpd", math.nan) - ge.get("val_bpd", math.nan))})
  a, b = cpu["epochs"][-1].get("val_bpd", math.nan), gpu["epochs"][-1].get("val_bpd", math.nan)
  diff = abs(a - b)
  out["final_val_bpd"] = {"cpu": a, "gpu": b, "diff": diff, "ok": diff <= bpd_tolerance}
  out["same_length"] = (len(cpu["epochs"]) == len(gpu["epochs"]) and
                        cpu.get("steps") == gpu.get("steps"))
  out["devices_ok"] = (not sees_gpu(cpu.get("devices")) and
                       sees_gpu(gpu.get("devices")) == expect_gpu)
  out["ok"] = bool(out["first_loss"]["ok"] and all(e["loss_ok"] for e in out["epochs"]) and
                   out["final_val_bpd"]["ok"] and out["same_length"] and out["devices_ok"])
  return out


@dataclasses.dataclass(frozen=True)
class CodecEnv(portability.Env):
  """A codec worker's environment on one side of the check.

  name: cpu, gpu, gpu_xla or cpu_reverse; gpu: whether the GPU is to be
  visible (hidden with CUDA_VISIBLE_DEVICES=-1 otherwise); codec_xla: the
  export's integer network under XLA (TF_ARDM_XLA); cpus: the CPUs it is
  pinned to (threads is their number). `xla` (TF_XLA_FLAGS auto-clustering)
  stays off.
  """
  name: str = "cpu"
  gpu: bool = False
  codec_xla: bool = False
  cpus: tuple = ()

  def label(self):
    return (f"{self.name} ({'GPU visible' if self.gpu else 'GPU hidden'}, conv={self.conv}, "
            f"XLA={'on' if self.codec_xla else 'off'}, {self.threads} threads)")

  def variables(self, base=None):
    env = super().variables(base)
    env["TF_ARDM_XLA"] = "1" if self.codec_xla else "0"
    if not self.gpu:
      env["CUDA_VISIBLE_DEVICES"] = "-1"
    return env

  def command(self, args):
    return [*pinned(self.cpus), self.python, portability.WORKER, *args]


def _skipped(result):
  return result is None or bool(result.get("skipped"))


def codec_verdict(sides, reverse, batches, expect_gpu):
  """The verdict of one model from its workers' results.

  sides: [(CodecEnv, worker result or None)], the CPU side first, then the
  GPU sides (each decoded the CPU's streams: --reference); reverse: (env,
  result) of the CPU worker that decoded the plain GPU side's streams, or
  None. Skipped workers (result None or {"skipped": ...}) drop out.

  Returns {"ok", "rows": [one per side that ran, and the reverse: name,
  device_gpu (whether it saw a GPU), conv, codec_xla, direct_conv, sha256,
  bytes, same_batches, own_exact, decodes_other (the CPU's streams for GPU
  sides, the GPU's for the reverse), encode_s, decode_s, error,
  other_error, mismatches]; byte_identical; own_round_trips_exact;
  gpu_decodes_cpu_exact; cpu_decodes_gpu_exact (None if not run);
  devices_ok; environments_as_requested; sides_missing}. ok is None when
  the CPU side or every GPU side did not run.
  """
  ran = [(env, r) for env, r in sides if not _skipped(r)]
  missing = [env.name for env, r in sides if _skipped(r)]
  out = {"sides_missing": missing}
  if not ran or ran[0][0].gpu or len(ran) < 2:
    errors = [f"{env.name}: {r['error']}" for env, r in ran if r.get("error")]
    out.update(ok=None, rows=[], error="; ".join(
        [f"no comparison: only {', '.join(env.name for env, _ in ran) or 'no side'} ran",
         *errors]))
    return out
  envs, results = [e for e, _ in ran], [r for _, r in ran]
  verdict = portability.compare(envs, results, batches)
  rows = []
  for env, result, row in zip(envs, results, verdict["rows"]):
    rows.append(_codec_row(env, result, row["sha256"], row["same_batches"], row["own_exact"],
                           row["env0_exact"], row["error"], row["env0_error"],
                           row["mismatches"]))
  reverse_exact, reverse_same = None, None
  if reverse is not None and not _skipped(reverse[1]):
    env, result = reverse
    ref = result.get("reference") or {}
    reverse_exact = bool(ref.get("exact")) and not result.get("error")
    hashes = [result.get("batches", {}).get(str(b), {}).get("sha256") for b in batches]
    reverse_same = hashes[0] is not None and hashes[0] == rows[0]["sha256"]
    entries = list(result.get("batches", {}).values())
    error = result.get("error") or next((e["error"] for e in entries if e.get("error")), None)
    ref_error = ref.get("error") or next(
        (e["error"] for e in ref.get("batches", {}).values() if e.get("error")), None)
    rows.append(_codec_row(env, result, hashes[0], bool(result.get("identical_across_batches")),
                           bool(result.get("own_exact")) and not result.get("error"),
                           reverse_exact, error, ref_error,
                           portability.env_mismatches(env, result)))
  devices_ok = all(row["device_gpu"] == (env.gpu and expect_gpu)
                   for env, row in zip([*envs, *([reverse[0]] if reverse_exact is not None
                                                 else [])], rows))
  out.update(
      rows=rows, byte_identical=verdict["byte_identical"] and reverse_same is not False,
      own_round_trips_exact=(verdict["own_round_trips_exact"] and
                             all(row["own_exact"] for row in rows)),
      gpu_decodes_cpu_exact=verdict["cross_decodes_exact"],
      cpu_decodes_gpu_exact=reverse_exact, devices_ok=devices_ok,
      environments_as_requested=not any(row["mismatches"] for row in rows))
  out["ok"] = bool(out["byte_identical"] and out["own_round_trips_exact"] and
                   out["gpu_decodes_cpu_exact"] and reverse_exact is not False and
                   devices_ok and out["environments_as_requested"])
  return out


def _codec_row(env, result, sha, same, own, other, error, other_error, mismatches):
  entries = list(result.get("batches", {}).values())
  return {"name": env.name, "device_gpu": sees_gpu((result.get("env") or {}).get("devices")),
          "conv": env.conv, "codec_xla": env.codec_xla,
          "direct_conv": result.get("direct_conv"), "use_xla": result.get("use_xla"),
          "sha256": sha, "bytes": entries[0]["bytes"] if entries else None,
          "same_batches": same, "own_exact": own, "decodes_other": other,
          "encode_s": sum(e.get("encode_s") or 0 for e in entries),
          "decode_s": sum(e.get("decode_s") or 0 for e in entries),
          "error": error, "other_error": other_error, "mismatches": mismatches}


def exit_status(verdicts):
  """1 when any verdict (True, False or None) is False, else 0."""
  return 1 if any(v is False for v in verdicts.values()) else 0


# ------------------------------------------------------------------ tables ---


def _yes(value):
  return "-" if value is None else "yes" if value else "NO"


def _grid(header, lines):
  widths = [max(len(str(r[c])) for r in [header, *lines]) for c in range(len(header))]
  return "\n".join("  ".join(str(v).ljust(w) for v, w in zip(r, widths)).rstrip()
                   for r in [header, *lines])


def _num(value, fmt):
  return "-" if value is None else format(value, fmt)


def throughput_table(summary, result):
  """The throughput part as text."""
  lines = []
  net = result.get("network") or {}
  lines.append(f"throughput: {result.get('config', 'configs/cifar10.cfg')} U-Net "
               f"({net.get('channels', '?')} channels, {net.get('num_res_blocks', '?')} "
               f"ResBlocks per side), batch {result.get('batch', '?')}, XLA, synthetic data"
               + (" [smoke: tiny network, on the CPU]" if result.get("smoke") else ""))
  peaks = summary["peaks"]
  if peaks:
    tf32 = (result.get("device") or {}).get("tensor_float_32")
    lines.append(f"dense matmul {result.get('matmul_n')}^2: " + ", ".join(
        f"{p} {v / 1e12:.2f} TFLOP/s" for p, v in peaks.items())
                 + (" (float32 as TF32)" if tf32 and (result.get("device") or {}).get("gpus")
                    else ""))
  if result.get("flops_per_step"):
    lines.append(f"FLOPs of one train step: {result['flops_per_step'] / 1e9:.1f} GFLOP "
                 f"(forward, backward and optimizer, traced {result.get('flops_precision')} "
                 f"graph)")
  rows = [[r["precision"], _num(r["compile_s"], ".0f"), _num(r["ms_per_step"], ".1f"),
           _num(r["examples_per_s"], ".1f"), _num(r["flops_per_s"] and r["flops_per_s"] / 1e12,
                                                  ".3f"),
           _num(r["vs_bfloat16_matmul"], ".3f"), _num(r["vs_float32_matmul"], ".3f"),
           _num(r["peak_gpu_gib"], ".1f"), _num(r["loss"], ".3f")]
          for r in summary["rows"]]
  if rows:
    lines.append(_grid(["precision", "warm-up s", "ms/step", "examples/s", "TFLOP/s",
                        "vs bf16 mm", "vs f32 mm", "peak GiB", "loss"], rows))
  if summary["missing"]:
    lines.append(f"  not measured: {', '.join(summary['missing'])}")
  if summary.get("error"):
    lines.append(f"  error: {summary['error']}")
  return "\n".join(lines)


def train_table(verdict, cpu, gpu, opts, gpu_label):
  """The train part as text."""
  lines = [f"train: configs/digits.cfg, {opts.check_steps} steps in {opts.check_epochs} epochs, "
           f"seed {(cpu or {}).get('seed', 0)}, on the CPU and on the {gpu_label}"]
  if verdict.get("ok") is None and "first_loss" not in verdict:
    lines.append(f"  error: {verdict.get('error')}")
    return "\n".join(lines)
  rows = [["step 1 loss", f"{verdict['first_loss']['cpu']:.5f}",
           f"{verdict['first_loss']['gpu']:.5f}",
           f"{verdict['first_loss']['rdiff'] * 100:.3f}%"]]
  for e in verdict["epochs"]:
    rows.append([f"epoch {e['epoch']} loss", f"{e['cpu_loss']:.4f}", f"{e['gpu_loss']:.4f}",
                 f"{e['loss_rdiff'] * 100:.2f}%"])
    rows.append([f"epoch {e['epoch']} valid bpd", _num(e["cpu_val_bpd"], ".4f"),
                 _num(e["gpu_val_bpd"], ".4f"), _num(e["val_bpd_diff"], ".4f")])
  rows.append(["train wall s", f"{cpu.get('wall_s', 0):.0f}", f"{gpu.get('wall_s', 0):.0f}",
               ""])
  lines.append(_grid(["", "cpu", "gpu", "diff"], rows))
  lines.append("  (float reductions run in other orders on the two devices, and a GPU computes\n"
               "  float32 convolutions and matmuls as TF32: the runs agree within tolerances,\n"
               "  not bitwise)")
  if not verdict["devices_ok"]:
    lines.append("  devices NOT as asked: cpu run saw " + ", ".join(cpu.get("devices", []))
                 + "; gpu run saw " + ", ".join(gpu.get("devices", [])))
  return "\n".join(lines)


def codec_table(model, verdict, opts):
  """One model's codec part as text."""
  lines = [f"codec {model}: {opts.codec_count} test datapoints, budget {opts.codec_budget}, "
           f"batches {','.join(map(str, opts.codec_batches))}"]
  rows = [[r["name"], "GPU" if r["device_gpu"] else "CPU", r["conv"],
           "on" if r["codec_xla"] else "off", _yes(r["direct_conv"]),
           (r["sha256"] or "-")[:12], str(r["bytes"] if r["bytes"] is not None else "-"),
           _yes(r["same_batches"]), _yes(r["own_exact"]), _yes(r["decodes_other"]),
           f"{r['encode_s']:.1f}", f"{r['decode_s']:.1f}"] for r in verdict.get("rows", [])]
  if rows:
    lines.append(_grid(["side", "device", "conv", "XLA", "direct_conv", "sha256", "bytes",
                        "same B", "own exact", "decodes other", "enc s", "dec s"], rows))
    lines.append("  (decodes other: the GPU sides decode the CPU's streams, cpu_reverse the "
                 "GPU's)")
  for r in verdict.get("rows", []):
    for what, text in (("", r["error"]), ("decoding the other's streams: ", r["other_error"])):
      if text:
        lines.append(f"  {r['name']}: {what}{text}")
    if r["mismatches"]:
      lines.append(f"  {r['name']}: not the environment asked for: "
                   f"{', '.join(r['mismatches'])}")
  if verdict.get("sides_missing"):
    lines.append(f"  not run: {', '.join(verdict['sides_missing'])}")
  if verdict.get("error"):
    lines.append(f"  error: {verdict['error']}")
  return "\n".join(lines)


# ------------------------------------------------------------------- check ---


def _last_line(log_path):
  """The last line of a log that is not TensorFlow's C++ logging (else its last line)."""
  try:
    with open(log_path, errors="replace") as f:
      lines = [line.strip() for line in f if line.strip()]
  except OSError:
    return "(no log)"
  tail = [line for line in lines if not TF_LOG_LINE.match(line)][-1:] or lines[-1:]
  return tail[0] if tail else "(no output)"


class Check:
  """Runs the parts in three lanes (module doc) and collects the report."""

  def __init__(self, opts, device):
    self.opts, self.device = opts, device
    self.start = time.monotonic()
    self.deadline = self.start + 60.0 * opts.max_minutes
    self.lock = threading.Lock()
    self.expect_gpu = bool(device["gpus"])  # With --smoke too: the GPU side then uses it.
    self.gpu_cpus, self.cpu_cpus = split_cpus(os.sched_getaffinity(0), opts.gpu_side_cpus)
    if not pinned(self.cpu_cpus):  # No taskset: nothing is pinned.
      self.gpu_cpus = self.cpu_cpus = tuple(sorted(os.sched_getaffinity(0)))
    self.gpu_label = "GPU" if self.expect_gpu else "CPU again (smoke: no GPU)"
    self.path = os.path.join(opts.out, "gpu_check.json")
    self.lock_path = os.path.join(opts.out, "gpu.lock")
    self.report = {
        "script": "benchmarks/gpu_check.py", "argv": sys.argv,
        "started": time.strftime("%Y-%m-%d %H:%M:%S %z"), "smoke": opts.smoke,
        "device": device, "options": dataclasses.asdict(opts),
        "cpus": {"gpu_side": list(self.gpu_cpus), "cpu_side": list(self.cpu_cpus),
                 "pinned": bool(pinned(self.cpu_cpus))},
        "jobs": {}, "parts": {}, "verdicts": {}, "errors": []}

  def elapsed(self):
    return time.monotonic() - self.start

  def log(self, message):
    with self.lock:
      print(f"[{time.strftime('%H:%M:%S')} +{self.elapsed():5.0f} s] {message}", flush=True)

  def save(self):
    with self.lock:
      self.report["wall_s"] = round(self.elapsed(), 1)
      _save_json(self.path, self.report)

  def job(self, name, fn):
    """Runs fn(seconds left) unless out of time; records and returns its result dict."""
    left = self.deadline - time.monotonic()
    if left < MIN_JOB_S:
      result = {"skipped": f"out of time (--max_minutes={self.opts.max_minutes})"}
    else:
      self.log(f"{name}: start")
      start = time.monotonic()
      try:
        result = fn(left)
      except Exception as e:  # pylint: disable=broad-except
        result = {"error": f"{type(e).__name__}: {e}"[:500],
                  "traceback": traceback.format_exc()[-4000:]}
      result.setdefault("job_s", round(time.monotonic() - start, 1))
    status = (f"skipped: {result['skipped']}" if result.get("skipped") else
              f"ERROR: {result['error']}" if result.get("error") else "ok")
    self.log(f"{name}: {status} ({result.get('job_s', 0):.0f} s)")
    with self.lock:
      self.report["jobs"][name] = result
    self.save()
    return result

  def worker_env(self, gpu):
    """The process environment of one of this script's workers on a side."""
    controlled = portability._CONTROLLED  # pylint: disable=protected-access
    env = {k: v for k, v in os.environ.items() if k not in controlled}
    env["PYTHONUNBUFFERED"] = "1"
    if not gpu:
      env["CUDA_VISIBLE_DEVICES"] = "-1"
    return env

  def run_process(self, name, argv, env, log_path, timeout):
    """Runs argv, its output to log_path (progress lines echoed); exit code or 'timeout'."""
    with open(log_path, "w") as log:
      log.write(" ".join(argv) + "\n")
      log.flush()
      proc = subprocess.Popen(argv, env=env, cwd=REPO, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, errors="replace")
      def pump():
        for line in proc.stdout:
          log.write(line)
          log.flush()
          if line.startswith(PROGRESS):
            self.log(f"{name}: {line[len(PROGRESS):].rstrip()}")
      reader = threading.Thread(target=pump, daemon=True)
      reader.start()
      try:
        rc = proc.wait(timeout=timeout)
      except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        rc = "timeout"
      reader.join(30)
    return rc

  def own_worker(self, name, flag, directory, args, gpu, cpus, timeout):
    """Runs this script as a worker (--<flag>=directory); its result dict."""
    os.makedirs(directory, exist_ok=True)
    result_path = os.path.join(directory, "result.json")
    if os.path.exists(result_path):
      os.remove(result_path)
    log_path = os.path.join(directory, "log.txt")
    argv = [*pinned(cpus), sys.executable, os.path.abspath(__file__),
            f"--{flag}={directory}", *args]
    rc = self.run_process(name, argv, self.worker_env(gpu), log_path, timeout)
    result = {}
    if os.path.exists(result_path):
      with open(result_path) as f:
        result = json.load(f)
    result["rc"], result["log"] = rc, log_path
    if rc != 0:
      tail = _last_line(log_path)
      why = (f"timed out after {timeout:.0f} s" if rc == "timeout" else
             f"killed by signal {-rc}" if rc < 0 else f"exit status {rc}")
      result["error"] = f"worker {why}: {tail}"[:500]
    return result

  # --- the parts' jobs ---

  def throughput(self, left):
    o = self.opts
    args = [f"--cifar_steps={o.cifar_steps}",
            f"--cifar_precisions={','.join(o.cifar_precisions)}"]
    if o.cifar_batch:
      args.append(f"--cifar_batch={o.cifar_batch}")
    if o.smoke:
      args.append("--smoke")
    args.append(f"--gpu_lock={self.lock_path}")
    # Every CPU, for XLA's parallel compilation.
    cpus = tuple(sorted(os.sched_getaffinity(0)))
    return self.own_worker("throughput", "throughput_worker",
                           os.path.join(o.out, "throughput"), args, True, cpus, left)

  def train(self, side, left):
    o = self.opts
    return self.own_worker(
        f"train {side}", "train_worker", os.path.join(o.out, f"train_{side}"),
        [f"--check_steps={o.check_steps}", f"--check_epochs={o.check_epochs}"],
        side == "gpu", self.gpu_cpus if side == "gpu" else self.cpu_cpus, left)

  def codec_envs(self):
    build, python = portability.current_build()
    def env(name, gpu, conv, xla, cpus):
      return CodecEnv(build=build, python=python, onednn=True, xla=False,
                      threads=len(cpus), conv=conv, name=name, gpu=gpu, codec_xla=xla,
                      cpus=cpus if pinned(cpus) else ())
    return {"cpu": env("cpu", False, "direct", False, self.cpu_cpus),
            "gpu": env("gpu", True, "im2col", False, self.gpu_cpus),
            "gpu_xla": env("gpu_xla", True, "im2col", True, self.gpu_cpus),
            "cpu_reverse": env("cpu_reverse", False, "direct", False, self.cpu_cpus)}

  def codec_dir(self, model):
    return os.path.join(self.opts.out, "codec", model)

  def codec_prepare(self, left):
    del left
    shapes = {}
    for model in self.opts.codec_models:
      os.makedirs(self.codec_dir(model), exist_ok=True)
      x = portability.prepare_data(os.path.join(REPO, "savedmodels", model),
                                   self.opts.codec_count,
                                   os.path.join(self.codec_dir(model), "x.npy"))
      shapes[model] = list(x.shape)
    return {"shapes": shapes}

  def codec_worker(self, model, env, left, reference=None, save=False):
    o, d = self.opts, self.codec_dir(model)
    if not os.path.exists(os.path.join(d, "x.npy")):
      return {"error": "no test data (the preparation failed)"}
    streams, out = os.path.join(d, f"{env.name}_streams.npz"), os.path.join(d, f"{env.name}.json")
    result = portability.run_worker(
        env, portability.codec_dir(os.path.join(REPO, "savedmodels", model)),
        os.path.join(d, "x.npy"), o.codec_budget, list(o.codec_batches), out,
        reference=reference if reference and os.path.exists(reference) else None,
        save_streams=streams if save else None, timeout=left)
    if (result.get("error") or "").startswith("worker ") and os.path.exists(out + ".log"):
      # run_worker quotes the log's last line, often TensorFlow's logging: a better one.
      result["error"] = f"{result['error'].split(': ', 1)[0]}: {_last_line(out + '.log')}"[:500]
    return result

  def run(self):
    """Runs the chosen parts in their lanes; fills self.report."""
    o, parts = self.opts, set(self.opts.parts)
    lanes = [concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix=name)
             for name in ("cpu-lane", "gpu-lane", "throughput-lane")]
    cpu_lane, gpu_lane, throughput_lane = lanes
    f = {}
    def submit(lane, name, fn, *args, after=None, lock=False, **kwargs):
      """Queues job `name` = fn(*args, seconds left, **kwargs) once job `after` has
      ended, holding the GPU lock with `lock`."""
      def task():
        if after:
          f[after].result()
        with gpu_lock(self.lock_path if lock else None):
          result = self.job(name, lambda left: fn(*args, left, **kwargs))
        if lock:
          time.sleep(1)  # A waiting throughput worker gets the lock before the next job.
        return result
      f[name] = lane.submit(task)
    envs = self.codec_envs()
    models = o.codec_models if "codec" in parts else ()
    if "throughput" in parts:
      submit(throughput_lane, "throughput", self.throughput)
    if models:
      submit(cpu_lane, "codec prepare", self.codec_prepare)
    for m in models:
      submit(cpu_lane, f"codec {m} cpu", self.codec_worker, m, envs["cpu"], save=True)
    if "train" in parts:
      submit(gpu_lane, "train gpu", self.train, "gpu", lock=True)
      submit(cpu_lane, "train cpu", self.train, "cpu")
    for m in models:
      d = self.codec_dir(m)
      submit(gpu_lane, f"codec {m} gpu", self.codec_worker, m, envs["gpu"], lock=True,
             after=f"codec {m} cpu", reference=os.path.join(d, "cpu_streams.npz"), save=True)
      submit(cpu_lane, f"codec {m} cpu_reverse", self.codec_worker, m, envs["cpu_reverse"],
             after=f"codec {m} gpu", reference=os.path.join(d, "gpu_streams.npz"))
    for m in models if o.codec_gpu_xla else ():
      submit(gpu_lane, f"codec {m} gpu_xla", self.codec_worker, m, envs["gpu_xla"], lock=True,
             after=f"codec {m} cpu",
             reference=os.path.join(self.codec_dir(m), "cpu_streams.npz"))
    results = {name: future.result() for name, future in f.items()}
    for lane in lanes:
      lane.shutdown()
    self.conclude(results, envs)

  def conclude(self, results, envs):
    """Verdicts and tables of the parts from the jobs' results."""
    o, parts, texts = self.opts, self.report["parts"], []
    verdicts = self.report["verdicts"]
    if "throughput" in o.parts:
      result = results["throughput"]
      summary = throughput_summary(result, o.cifar_precisions)
      parts["throughput"], verdicts["throughput"] = summary, summary["ok"]
      texts.append(throughput_table(summary, result))
    if "train" in o.parts:
      cpu, gpu = results["train cpu"], results["train gpu"]
      verdict = train_verdict(cpu, gpu, o.first_loss_rtol, o.loss_rtol, o.bpd_tolerance,
                              self.expect_gpu)
      parts["train"], verdicts["train"] = verdict, verdict["ok"]
      texts.append(train_table(verdict, cpu, gpu, o, self.gpu_label))
    if "codec" in o.parts:
      parts["codec"] = {}
      prepared = results["codec prepare"]
      for m in o.codec_models:
        sides = [(envs["cpu"], results[f"codec {m} cpu"]),
                 (envs["gpu"], results[f"codec {m} gpu"])]
        if o.codec_gpu_xla:
          sides.append((envs["gpu_xla"], results[f"codec {m} gpu_xla"]))
        verdict = codec_verdict(sides, (envs["cpu_reverse"], results[f"codec {m} cpu_reverse"]),
                                o.codec_batches, self.expect_gpu)
        if prepared.get("error"):
          verdict.setdefault("error", f"data preparation: {prepared['error']}")
        parts["codec"][m], verdicts[f"codec {m}"] = verdict, verdict["ok"]
        texts.append(codec_table(m, verdict, o))
    self.report["errors"] = [f"{name}: {r['error']}" for name, r in results.items()
                             if r.get("error")]
    self.report["skipped"] = [name for name, r in results.items() if r.get("skipped")]
    self.report["tables"] = texts
    self.save()

  def print_report(self):
    """The tables, then the summary and verdict lines."""
    print("\n" + "\n\n".join(self.report["tables"]) + "\n")
    gpus = ", ".join(self.device["gpu_names"]) or "no GPU"
    print(f"summary ({gpus}{', smoke sizes' if self.opts.smoke else ''}; "
          f"TF {self.device['tf_version']}, {self.device['cpu_affinity']} CPUs):")
    for line in summary_lines(self.report, self.opts):
      print("  " + line)
    status = exit_status(self.report["verdicts"])
    undetermined = [k for k, v in self.report["verdicts"].items() if v is None]
    print(f"verdict: {'FAIL' if status else 'INCOMPLETE' if undetermined else 'PASS'}"
          + (f" (not determined: {', '.join(undetermined)})" if undetermined else "")
          + f"; wall time {self.elapsed():.0f} s; results in {self.path}")
    return status


def summary_lines(report, opts):
  """One line per part (and per codec model) for the final summary."""
  lines, parts, verdicts = [], report["parts"], report["verdicts"]
  word = {True: "PASS", False: "FAIL", None: "ERROR"}
  if "throughput" in parts:
    s = parts["throughput"]
    rows = ", ".join(
        f"{r['precision']} {r['ms_per_step']:.1f} ms/step ({r['examples_per_s']:.0f} "
        f"examples/s; {_num(r['vs_bfloat16_matmul'], '.2f')} of the bf16, "
        f"{_num(r['vs_float32_matmul'], '.2f')} of the f32 matmul rate)"
        for r in s["rows"]) or "no measurement"
    mark = "ok" if verdicts["throughput"] else word[verdicts["throughput"]]
    lines.append(f"throughput [{mark}]: {rows}"
                 + (f"; error: {s['error']}" if s.get("error") else ""))
  if "train" in parts:
    v = parts["train"]
    if "final_val_bpd" in v:
      fv = v["final_val_bpd"]
      lines.append(
          f"train [{word[v['ok']]}]: CPU and GPU agree: {_yes(v['ok'])} (final validation "
          f"{fv['cpu']:.4f} vs {fv['gpu']:.4f} bits/dim, diff {fv['diff']:.4f} <= "
          f"{opts.bpd_tolerance}: {_yes(fv['ok'])}; epoch losses within {opts.loss_rtol:.0%}: "
          f"{_yes(all(e['loss_ok'] for e in v['epochs']))}; first-step loss within "
          f"{opts.first_loss_rtol:.0%}: {_yes(v['first_loss']['ok'])}; devices as asked: "
          f"{_yes(v['devices_ok'])})")
    else:
      lines.append(f"train [{word[v['ok']]}]: {v.get('error')}")
  for model, v in parts.get("codec", {}).items():
    if v.get("rows"):
      lines.append(
          f"codec {model} [{word[v['ok']]}]: byte-identical: {_yes(v['byte_identical'])}; "
          f"own round trips exact: {_yes(v['own_round_trips_exact'])}; GPU decodes CPU's: "
          f"{_yes(v['gpu_decodes_cpu_exact'])}; CPU decodes GPU's: "
          f"{_yes(v['cpu_decodes_gpu_exact'])}; devices as asked: {_yes(v['devices_ok'])}")
    else:
      lines.append(f"codec {model} [{word[v['ok']]}]: {v.get('error')}")
  for error in report.get("errors", []):
    lines.append(f"error: {error}"[:300])
  if report.get("skipped"):
    lines.append(f"skipped (out of time): {', '.join(report['skipped'])}")
  return lines


def _parse(argv):
  """absl's flag parsing; a bad flag prints one line and exits with status 2."""
  try:
    return FLAGS(argv)
  except flags.Error as e:
    print(f"error: {e}".replace("\n", " "), file=sys.stderr)
    sys.exit(2)


def main(argv):
  if len(argv) > 1:
    print(f"error: unexpected arguments {argv[1:]}", file=sys.stderr)
    return 2
  if FLAGS.throughput_worker:
    throughput_worker(FLAGS.throughput_worker, FLAGS.cifar_steps, FLAGS.cifar_batch,
                      FLAGS.cifar_precisions, FLAGS.smoke, FLAGS.gpu_lock)
    return 0
  if FLAGS.train_worker:
    train_worker(FLAGS.train_worker, FLAGS.check_steps, FLAGS.check_epochs)
    return 0
  try:
    opts = check_options(options_from_flags())
  except UserError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  if not tf.config.list_physical_devices("GPU") and not opts.smoke:
    print("error: benchmarks/gpu_check.py needs a GPU and none is visible; give --smoke "
          "to verify it on this CPU", file=sys.stderr)
    return 2
  device = describe_devices()
  try:  # This process stays off the GPU; the workers use it.
    tf.config.set_visible_devices([], "GPU")
  except RuntimeError:
    pass
  os.makedirs(opts.out, exist_ok=True)
  check = Check(opts, device)
  print(f"gpu_check: parts {','.join(opts.parts)}"
        + (" [smoke: tiny sizes, the GPU side is this CPU]" if opts.smoke else "")
        + f"; GPU side CPUs {list(check.gpu_cpus)}, CPU side CPUs {list(check.cpu_cpus)}; "
        f"at most {opts.max_minutes} min; results in {check.path}", flush=True)
  try:
    check.run()
  finally:
    check.save()
  return check.print_report()


if __name__ == "__main__":
  app.run(main, flags_parser=_parse)
