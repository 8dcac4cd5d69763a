"""Optimizer construction: Adam/AdamW, the learning-rate schedule (linear
warm-up, then constant or cosine decay), global-norm clipping."""
import tensorflow as tf


class _FusedUpdate:
  """Keras' Adam update with one fused kernel per variable (ResourceApplyAdam).

  The same arithmetic, slots and checkpoints as tf.keras.optimizers.Adam /
  AdamW: alpha = lr sqrt(1 - b2^t) / (1 - b1^t); m += (g - m)(1 - b1);
  v += (g^2 - v)(1 - b2); var -= alpha m / (sqrt(v) + eps). Keras builds
  that from about 29 small ops per variable; outside XLA (training on a
  CPU) their dispatch cost more than the arithmetic. The scalars (lr,
  b1^t, b2^t) are made once per step and device. Sparse gradients and
  AMSGrad take Keras' own path.
  """

  def apply_gradients(self, grads_and_vars, *args, **kwargs):
    self._step_scalars = {}
    try:
      return super().apply_gradients(grads_and_vars, *args, **kwargs)
    finally:
      self._step_scalars = {}

  def _scalars(self, variable):
    cache = getattr(self, "_step_scalars", None)
    key = (variable.device, variable.dtype)
    if cache is not None and key in cache:
      return cache[key]
    dtype = variable.dtype
    step = tf.cast(self.iterations + 1, dtype)
    scalars = (tf.cast(self.learning_rate, dtype),
               tf.pow(tf.cast(self.beta_1, dtype), step),
               tf.pow(tf.cast(self.beta_2, dtype), step))
    if cache is not None:
      cache[key] = scalars
    return scalars

  def update_step(self, gradient, variable):
    if isinstance(gradient, tf.IndexedSlices) or self.amsgrad:
      return super().update_step(gradient, variable)
    index = self._index_dict[self._var_key(variable)]
    lr, beta_1_power, beta_2_power = self._scalars(variable)
    dtype = variable.dtype
    return tf.raw_ops.ResourceApplyAdam(
        var=variable.handle, m=self._momentums[index].handle,
        v=self._velocities[index].handle, beta1_power=beta_1_power,
        beta2_power=beta_2_power, lr=lr, beta1=tf.cast(self.beta_1, dtype),
        beta2=tf.cast(self.beta_2, dtype), epsilon=tf.cast(self.epsilon, dtype),
        grad=gradient)


class Adam(_FusedUpdate, tf.keras.optimizers.Adam):
  """tf.keras.optimizers.Adam with fused per-variable updates (`_FusedUpdate`)."""


class AdamW(_FusedUpdate, tf.keras.optimizers.AdamW):
  """tf.keras.optimizers.AdamW with fused per-variable updates (`_FusedUpdate`)."""


class LinearWarmup(tf.keras.optimizers.schedules.LearningRateSchedule):
  """lr * min(1, step / warmup_steps); step 0 gives 0 (spec §8)."""

  def __init__(self, learning_rate, warmup_steps):
    self.learning_rate, self.warmup_steps = learning_rate, warmup_steps

  def __call__(self, step):
    if not self.warmup_steps:
      return tf.constant(self.learning_rate, tf.float32)
    frac = tf.cast(step, tf.float32) / float(self.warmup_steps)
    return self.learning_rate * tf.minimum(1.0, frac)

  def get_config(self):
    return {"learning_rate": self.learning_rate, "warmup_steps": self.warmup_steps}


SCHEDULES = ("constant", "cosine")


def schedule(name, learning_rate, warmup_steps=0, train_steps=None):
  """The learning rate per optimizer step.

  'constant': `LinearWarmup`. 'cosine': the same linear warm-up from 0, then
  Keras' cosine decay from `learning_rate` to 0 at step `train_steps` (and 0
  after it). On configs/digits.cfg at 1200 steps it measured no better than
  the constant rate (docs/results.md).
  """
  if name == "constant":
    return LinearWarmup(learning_rate, warmup_steps)
  if name != "cosine":
    raise ValueError(f"unknown learning-rate schedule {name!r}; choose one of "
                     f"{', '.join(SCHEDULES)}")
  if not train_steps or train_steps <= warmup_steps:
    raise ValueError(f"a cosine schedule needs train_steps ({train_steps}) > "
                     f"warmup_steps ({warmup_steps})")
  return tf.keras.optimizers.schedules.CosineDecay(
      0.0, train_steps - warmup_steps, warmup_target=learning_rate,
      warmup_steps=warmup_steps)


def build(name, learning_rate, warmup_steps=0, beta1=0.9, beta2=0.999,
          epsilon=1e-8, weight_decay=0.0, clip_norm=None, loss_scale=False,
          lr_schedule="constant", train_steps=None):
  """Adam or AdamW (decoupled weight decay) with clipping of the global norm.

  loss_scale: wrap it in Keras' dynamic LossScaleOptimizer (float16
  training); the clipping then sees the unscaled gradients.
  lr_schedule, train_steps: the learning rate per step (`schedule`).
  """
  kwargs = dict(learning_rate=schedule(lr_schedule, learning_rate, warmup_steps,
                                       train_steps),
                beta_1=beta1, beta_2=beta2, epsilon=epsilon,
                global_clipnorm=clip_norm)
  if name == "adamw":
    optimizer = AdamW(weight_decay=weight_decay, **kwargs)
  else:
    optimizer = Adam(**kwargs)
  return tf.keras.mixed_precision.LossScaleOptimizer(optimizer) if loss_scale else optimizer
