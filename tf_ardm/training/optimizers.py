"""Optimizer construction: Adam/AdamW, linear LR warm-up, global-norm clipping."""
import tensorflow as tf


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


def build(name, learning_rate, warmup_steps=0, beta1=0.9, beta2=0.999,
          epsilon=1e-8, weight_decay=0.0, clip_norm=None, loss_scale=False):
  """Adam or AdamW (decoupled weight decay) with clipping of the global norm.

  loss_scale: wrap it in Keras' dynamic LossScaleOptimizer (float16
  training); the clipping then sees the unscaled gradients.
  """
  kwargs = dict(learning_rate=LinearWarmup(learning_rate, warmup_steps),
                beta_1=beta1, beta_2=beta2, epsilon=epsilon,
                global_clipnorm=clip_norm)
  if name == "adamw":
    optimizer = tf.keras.optimizers.AdamW(weight_decay=weight_decay, **kwargs)
  else:
    optimizer = tf.keras.optimizers.Adam(**kwargs)
  return tf.keras.mixed_precision.LossScaleOptimizer(optimizer) if loss_scale else optimizer
