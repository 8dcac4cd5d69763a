"""The training configuration: every setting of the training loop.

A `TrainConfig` is what `tf_ardm.training.loop` reads; the command layer
(`tf_ardm.cli.flags.train_config`) builds one from the flags, and Python
users construct one directly:

  TrainConfig(batch_size=64, train_steps=1800, learning_rate=2e-3)
"""
import dataclasses
from typing import Optional

from tf_ardm.errors import UserError
from tf_ardm.networks.precision import PRECISIONS
from tf_ardm.training.optimizers import SCHEDULES

OPTIMIZERS = ("adam", "adamw")


@dataclasses.dataclass
class TrainConfig:
  """Settings of one training run (hyper-parameters follow spec §8).

  Attributes:
    batch_size: global batch size (every replica takes its share).
    train_steps: total optimizer steps; a resumed run continues to it.
    steps_per_epoch: steps between evaluations and summaries.
    checkpoint_every: steps between backups of the training state.
    optimizer: 'adam' or 'adamw'.
    learning_rate: peak learning rate.
    warmup_steps: linear warm-up steps (0: none).
    lr_schedule: after the warm-up, 'constant' or 'cosine' decay to 0 at
      train_steps (tf_ardm.training.optimizers.schedule).
    beta1, beta2: Adam's moment decays.
    weight_decay: AdamW's decoupled weight decay.
    clip_norm: global-norm gradient clipping; 0 or None: no clipping.
    ema_decay: EMA decay of the evaluation weights.
    augment: random flips and 90° rotations of images.
    eval_batch_size: validation batch size.
    sample_budget: network calls of the summary samples.
    jit_compile: compile the train step with XLA; None: where a GPU trains
      (tf_ardm.training.hardware).
    precision: what the training network computes in: 'float32', or mixed
      'bfloat16' or 'float16' (with dynamic loss scaling); the variables,
      the logits, the loss and the EMA weights are float32 in each. 'auto':
      bfloat16 where the devices compute it natively, else float32
      (tf_ardm.training.hardware).
    max_train_minutes: stop after this much wall clock after the first
      (compiling) step; None: no limit.
    seed: seed of the initial weights, data order, orders and times.
    deterministic: TF op determinism (bitwise-reproducible runs).
  """
  batch_size: int = 64
  train_steps: int = 10000
  steps_per_epoch: int = 500
  checkpoint_every: int = 100
  optimizer: str = "adam"
  learning_rate: float = 1e-4
  warmup_steps: int = 0
  lr_schedule: str = "constant"
  beta1: float = 0.9
  beta2: float = 0.999
  weight_decay: float = 0.0
  clip_norm: Optional[float] = 100.0
  ema_decay: float = 0.9999
  augment: bool = False
  eval_batch_size: int = 200
  sample_budget: int = 64
  jit_compile: Optional[bool] = True
  precision: str = "float32"
  max_train_minutes: Optional[float] = None
  seed: int = 0
  deterministic: bool = False

  def __post_init__(self):
    if self.precision not in (*PRECISIONS, "auto"):
      raise UserError(f"unknown precision {self.precision!r}; choose one of "
                      f"{', '.join(PRECISIONS)} or auto")
    if self.lr_schedule not in SCHEDULES:
      raise UserError(f"unknown lr_schedule {self.lr_schedule!r}; choose one of "
                      f"{', '.join(SCHEDULES)}")
    if self.lr_schedule == "cosine" and self.train_steps <= self.warmup_steps:
      raise UserError(f"--lr_schedule=cosine needs train_steps ({self.train_steps}) "
                      f"> warmup_steps ({self.warmup_steps})")
    if self.optimizer not in OPTIMIZERS:
      raise UserError(f"unknown optimizer {self.optimizer!r}; choose one of "
                      f"{', '.join(OPTIMIZERS)}")
    for name in ("batch_size", "train_steps", "steps_per_epoch", "checkpoint_every",
                 "eval_batch_size", "sample_budget"):
      if getattr(self, name) < 1:
        raise UserError(f"{name} must be >= 1, got {getattr(self, name)}")
    if not 0.0 <= self.ema_decay <= 1.0:
      raise UserError(f"ema_decay must lie in [0, 1], got {self.ema_decay}")

  @property
  def epochs(self):
    """Keras epochs of steps_per_epoch steps that cover train_steps."""
    return -(-self.train_steps // self.steps_per_epoch)
