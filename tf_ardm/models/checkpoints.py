"""Saving and restoring trained models: config.json plus a TF checkpoint.

A model directory holds `config.json` (the ModelConfig, the EMA decay and the
number of optimizer steps trained), `model-*` files with
the training network, the EMA network and the loss tracker, and optionally
`heldout_loss_components.npy` (float32 [D], from evaluate --loss_components).
"""
import dataclasses
import json
import os

import numpy as np
import tensorflow as tf

from tf_ardm import atomic
from tf_ardm import models
from tf_ardm.config import ModelConfig
from tf_ardm.errors import UserError

CONFIG = "config.json"
HELDOUT = "heldout_loss_components.npy"


def _checkpoint(model):
  return tf.train.Checkpoint(network=model.network, ema_network=model.ema_network,
                             loss_tracker=model.loss_tracker)


def save(model, directory):
  """Writes config.json and the weights of `model` into `directory`, atomically."""
  optimizer = getattr(model, "optimizer", None)
  steps = int(optimizer.iterations.numpy()) if optimizer else model.trained_steps
  with atomic.directory(directory) as tmp:
    with open(os.path.join(tmp, CONFIG), "w") as f:
      f.write(json.dumps({"model": json.loads(model.config.to_json()),
                          "ema_decay": model.ema_decay, "trained_steps": steps},
                         indent=2))
    _checkpoint(model).write(os.path.join(tmp, "model"))
    heldout = getattr(model, "heldout_loss_components", None)
    if heldout is not None:
      np.save(os.path.join(tmp, HELDOUT), heldout)


def is_model_dir(path):
  """Whether `path` is a trained model directory (it holds config.json)."""
  return os.path.isfile(os.path.join(path, CONFIG))


def restore(directory, shape=None):
  """Rebuilds the model saved in `directory` (the config's model class, restored).

  shape: None, or [H, W, C] to rebuild an image model (U-Net) at another
  height and width. Its weights don't depend on H and W (convolutions,
  GroupNorm and self-attention over however many positions there are), and
  its time input t * 1000 / (S * D) becomes the known fraction of the new
  D = H * W * C, so a model trained on 16 x 16 patches scores 64 x 64 tiles.
  The held-out loss components, which are per step of the old D, are not
  carried over.
  """
  path = os.path.join(directory, CONFIG)
  if not is_model_dir(directory):
    raise UserError(f"no trained model in {directory} (missing {CONFIG}); "
                    "train one with python -m tf_ardm.train")
  try:
    with open(path) as f:
      meta = json.load(f)
    config = ModelConfig(**meta["model"])
  except (ValueError, KeyError, TypeError) as e:
    raise UserError(f"{path} is corrupt: {e}") from e
  reshaped = shape is not None and list(shape) != list(config.shape)
  if reshaped:
    if config.network != "unet" or len(shape) != 3 or shape[-1] != config.shape[-1]:
      raise UserError(f"{directory}: a {config.network} model of shape {config.shape} can't be "
                      f"rebuilt at {list(shape)}: only U-Net image models change H and W")
    config = dataclasses.replace(config, shape=[int(v) for v in shape])
  model = models.build(config, ema_decay=meta.get("ema_decay", 0.9999))
  model.trained_steps = meta.get("trained_steps")
  try:
    if reshaped:  # The loss tracker's state is per step of the old D: left out.
      status = tf.train.Checkpoint(network=model.network, ema_network=model.ema_network).read(
          os.path.join(directory, "model"))
      status.assert_existing_objects_matched().expect_partial()
    else:
      _checkpoint(model).read(os.path.join(directory, "model")).assert_consumed()
  except (tf.errors.OpError, AssertionError, ValueError) as e:
    raise UserError(f"cannot restore the weights in {directory}: "
                    f"{str(e).splitlines()[0]}") from e
  heldout = os.path.join(directory, HELDOUT)
  if os.path.isfile(heldout) and not reshaped:
    model.heldout_loss_components = np.load(heldout).astype(np.float32)
  return model
