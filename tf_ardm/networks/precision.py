"""Compute precision of a network: float32, or Keras mixed precision.

`PRECISIONS` maps the names of `--precision` to Keras dtype policies. Under a
mixed policy the variables stay float32 and the layers compute in bfloat16 or
float16; the networks keep their output layer (the logits) in float32, and
the models compute log-softmax, the loss and the EMA weights in float32.
bfloat16 runs on CPUs (AMX, AVX512-BF16) and GPUs; float16 needs loss
scaling (`tf_ardm.training.loop` wraps the optimizer) and is a GPU format.
"""
import contextlib

import tensorflow as tf

PRECISIONS = {"float32": "float32", "bfloat16": "mixed_bfloat16", "float16": "mixed_float16"}


@contextlib.contextmanager
def scope(precision):
  """Layers made inside compute in `precision` (a key of PRECISIONS).

  Keras sub-layers take the global dtype policy when they are made, so the
  policy is set for the block and the previous one restored after it.
  """
  if precision not in PRECISIONS:
    raise ValueError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
  previous = tf.keras.mixed_precision.global_policy()
  tf.keras.mixed_precision.set_global_policy(PRECISIONS[precision])
  try:
    yield
  finally:
    tf.keras.mixed_precision.set_global_policy(previous)
