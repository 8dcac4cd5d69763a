"""What the training machine offers: the 'auto' precision and XLA setting.

`resolve(train_config)` turns `precision='auto'` and `jit_compile=None` into
concrete settings for the devices TensorFlow sees:

  * precision: bfloat16 where the matmuls have bfloat16 units (a GPU of
    compute capability >= 8.0; a CPU with AMX-BF16 or AVX512-BF16), else
    float32. float16 is never chosen: it needs loss scaling, so it is asked
    for by name.
  * jit_compile: XLA on a GPU; the plain TF step on a CPU, where oneDNN's
    kernels beat XLA's convolutions and matmuls (2-core CPU, float32: 375
    against 248 ms per step for configs/text.cfg on one core, 909 against
    621 ms for configs/text_bytes.cfg; benchmarks/train_throughput.py
    measures it per config).
"""
import dataclasses
import functools

from absl import logging
import tensorflow as tf

_CPU_BFLOAT16 = ("amx_bf16", "avx512_bf16")


@functools.lru_cache(maxsize=None)
def cpu_flags(path="/proc/cpuinfo"):
  """The instruction-set flags of the first CPU (a frozenset; empty if unknown)."""
  try:
    with open(path) as f:
      for line in f:
        if line.startswith("flags"):
          return frozenset(line.split(":", 1)[1].split())
  except OSError:
    pass
  return frozenset()


def gpu_capabilities():
  """(major, minor) compute capability of each visible GPU ((0, 0) if unknown)."""
  return [tf.config.experimental.get_device_details(gpu).get("compute_capability", (0, 0))
          for gpu in tf.config.list_physical_devices("GPU")]


def auto_precision(gpus=None, flags=None):
  """'bfloat16' where the training devices compute it natively, else 'float32'.

  gpus: compute capabilities (default: the visible GPUs'); with no GPU the
  CPU decides by its `flags` (default: cpu_flags()).
  """
  gpus = gpu_capabilities() if gpus is None else gpus
  if gpus:
    native = all(tuple(c) >= (8, 0) for c in gpus)
  else:
    native = any(f in (cpu_flags() if flags is None else flags) for f in _CPU_BFLOAT16)
  return "bfloat16" if native else "float32"


def auto_jit_compile(gpus=None):
  """XLA where a GPU trains, the plain step on a CPU."""
  return bool(gpu_capabilities() if gpus is None else gpus)


def resolve(train_config):
  """train_config with 'auto' precision and jit_compile=None made concrete."""
  changes = {}
  if train_config.precision == "auto":
    changes["precision"] = auto_precision()
  if train_config.jit_compile is None:
    changes["jit_compile"] = auto_jit_compile()
  if changes:
    logging.info("training settings for this machine: %s", changes)
  return dataclasses.replace(train_config, **changes)
