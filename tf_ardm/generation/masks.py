"""Orders, masks and corruption (spec §2, §3.1).

`sigma[b, i]` is the step at which position i is generated (a uniform
permutation of 0..D-1 per example). With t known variables (0-based t):
  known (prev)  = 1[sigma < t]          exactly t ones,
  current       = 1[sigma == t]         exactly one 1,
  unknown       = 1 - known             includes the current position.
The range version for a parallel step [left, right) uses
  known = 1[sigma < left], current = 1[left <= sigma < right].
"""
import tensorflow as tf


def sample_sigma(batch_size, num_steps, seed):
  """Uniform random orders, int32 [B, D]: the stable argsort of uniform noise.

  Args:
    batch_size: B, a scalar.
    num_steps: D, a Python int.
    seed: stateless seed, int32 or int64 [2].
  """
  noise = tf.random.stateless_uniform(tf.stack([batch_size, num_steps]), seed=seed)
  return tf.argsort(noise, axis=-1, stable=True, direction="ASCENDING")


def known_mask(sigma, t):
  """1[sigma < t] as int32 [B, D]; `t` is a scalar or [B]."""
  t = tf.convert_to_tensor(t, tf.int32)
  if t.shape.rank == 1:
    t = t[:, None]
  return tf.cast(sigma < t, tf.int32)


def current_mask(sigma, left, right=None):
  """1[left <= sigma < right] (right = left + 1 by default), int32 [B, D]."""
  left = tf.convert_to_tensor(left, tf.int32)
  right = left + 1 if right is None else tf.convert_to_tensor(right, tf.int32)
  if left.shape.rank == 1:
    left, right = left[:, None], right[:, None]
  return tf.cast((sigma >= left) & (sigma < right), tf.int32)


def corrupt(x, known, absorbing):
  """x where known, `absorbing` elsewhere. x, known: int32, same shape;
  absorbing: a scalar or a tensor of x's shape (an Upscale stage's x_past)."""
  return x * known + absorbing * (1 - known)
