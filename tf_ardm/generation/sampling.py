"""Generation with a policy (spec §4.1-4.2), and infilling.

A policy is a non-decreasing int32 vector [k] (or [B, k] per example) of left
boundaries pi_0 <= ... <= pi_{k-1}; extended with D, step j generates every
position with pi[j] <= sigma < pi[j+1] from one network call that sees the
positions sigma < pi[j] and time pi[j] (a repeated entry makes a step that
generates nothing). k network calls in total; the policy arange(D) is exact
sequential sampling.
"""
import tensorflow as tf

from tf_ardm.generation import distributions
from tf_ardm.generation import masks


def extend_policy(policy, batch, num_steps):
  """Policy [k] or [B, k] -> int32 [B, k+1] with D appended."""
  policy = tf.convert_to_tensor(policy, tf.int32)
  if policy.shape.rank == 1:
    policy = tf.tile(policy[None], [batch, 1])
  return tf.concat([policy, tf.fill([batch, 1], num_steps)], axis=1)


def infill_order(known, seed):
  """A uniform order that puts the known positions first.

  Args:
    known: int32 [B, D], 1 where the value is given.
    seed: stateless seed int32 [2].

  Returns:
    sigma int32 [B, D]: known positions get steps 0..n-1 in random order.
  """
  noise = tf.random.stateless_uniform(tf.shape(known), seed=seed)
  key = noise + 2.0 * tf.cast(1 - known, tf.float32)
  return tf.argsort(tf.argsort(key, axis=-1), axis=-1)


def infill_policy(num_known, num_steps, budget):
  """Naive policies over each example's unknown steps, int32 [B, budget].

  Example b knows n_b positions (steps 0..n_b-1 of its infill order); its k
  network calls split the remaining D - n_b steps as evenly as possible.
  """
  remaining = tf.cast(num_steps - num_known, tf.float64)[:, None]
  j = tf.cast(tf.range(budget), tf.float64)[None, :]
  offsets = tf.cast(tf.round(j * remaining / tf.cast(budget, tf.float64)), tf.int32)
  return num_known[:, None] + offsets


def sample_with_policy(denoiser, x, sigma, policy, seed, stage=None, past=None):
  """Fills the positions with sigma >= policy[:, 0] of x (spec §4.2, §6.5).

  Args:
    denoiser: a `Denoiser` (the EMA network of a trained model).
    x: int32 [B, *shape]; positions with sigma < policy[:, 0] are kept.
    sigma: int32 [B, D] order.
    policy: int32 [k] or [B, k] left boundaries.
    seed: stateless seed int32 [2].
    stage: int32 [B] the stage to run (Upscale), zeros when None.
    past: int32 [B, *shape], the stage's x_past: where the other positions
      start (default: the absorbing state).

  Returns:
    int32 [B, *shape] samples; known positions are bit for bit those of x.
  """
  shape = tf.shape(x)
  batch, num_steps = shape[0], denoiser.num_steps
  ext = extend_policy(policy, batch, num_steps)
  stage = denoiser.stage_ids(stage, batch)
  if past is None:
    past = tf.fill(shape, denoiser.config.absorbing)
  x = tf.where(sigma < ext[:, :1], tf.reshape(x, [batch, num_steps]),
               tf.reshape(past, [batch, num_steps]))
  for j in tf.range(tf.shape(ext)[1] - 1):
    left, right = ext[:, j], ext[:, j + 1]
    known = masks.known_mask(sigma, left)
    current = tf.reshape(x, shape)
    logits = denoiser.stage_logits(denoiser.logits(current, left, known, stage),
                                   current, stage)
    step_seed = tf.random.experimental.stateless_fold_in(seed, j)
    draw = denoiser.value(distributions.sample(logits, step_seed), current, stage)
    x = tf.where(masks.current_mask(sigma, left, right) > 0,
                 tf.reshape(draw, [batch, num_steps]), x)
  return tf.reshape(x, shape)


def policy_of_stage(policy, stage):
  """A stage's row of policies [S, k]; a policy [k] serves every stage."""
  policy = tf.convert_to_tensor(policy, tf.int32)
  return policy if policy.shape.rank == 1 else policy[stage]


def sample(denoiser, num, policy, seed):
  """Unconditional samples int32 [num, *shape], stage after stage.

  policy: int32 [k] for every stage, or [S, k] one row per stage. Each stage
  draws a fresh order (spec §6.5).
  """
  stages = denoiser.num_stages
  seeds = tf.random.experimental.stateless_split(seed, 2 * stages)
  x = tf.fill(tf.concat([[num], denoiser.config.shape], 0), denoiser.config.absorbing)
  for s in range(stages):
    sigma = masks.sample_sigma(num, denoiser.num_steps, seed=seeds[2 * s])
    x = sample_with_policy(denoiser, x, sigma, policy_of_stage(policy, s), seeds[2 * s + 1],
                           stage=tf.fill([num], s), past=x)
  return x
