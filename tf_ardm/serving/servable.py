"""The servable SavedModel of a trained model's EMA weights (pure TF ops).

Signatures (x int32 [B, *shape] with values in [0, K); budget int32 scalar in
[1, D], the network calls per stage; seed int32 scalar). An Upscale model
(S stages, tf_ardm.models.upscale) has the same signatures; its policies
carry a stage axis ([S, k] instead of [k]), its steps t are global in
[0, S*D) and its loss components have S*D entries:
  log_prob(x, budget) -> bits_per_dim float32 [B] (also serving_default): the
      exact code length -log2 p(x | sigma, policy) / D under the model's fixed
      order and the optimal policy for `budget` (budget D: the exact
      fixed-order NLL).
  elbo(x, policy int32 [k], seed) -> elbo_bpd float32 [B]: the unbiased
      one-call ELBO estimate of the parallel model with `policy` (<= 0: a
      bound on log2 p(x) per dimension); policy arange(D) gives the ordinary
      ELBO. A policy starts at 0 and is non-decreasing (a repeated entry is a
      step that generates nothing, as the DP may return).
  step_loss(x, t int32 [B], seed) -> loss_bpd float32 [B]: the one-step loss
      component at t (held-out loss-component estimates).
  sample(num, budget, seed) -> samples int32 [num, *shape].
  infill(x, known int32 [B, *shape], budget, seed) -> samples int32 [B, *shape]
      (known positions kept bit for bit), conditional_bits float32 [B]
      (-log2 p(x_unknown | x_known) of the given x).
  policy(budget) -> int32 [budget], the optimal policy (the DP per stage) for
      a tabulated budget: every budget when D <= 1024, else those of
      `policies.table_budgets(D)`; other budgets get the naive policy, here
      and in log_prob and sample (`policies.is_tabulated(D, budget)` says
      which; `tf_ardm.sample -v` prints it). The evaluation's budget table
      runs the DP itself, so its "DP" rows are DP policies for every budget.
  absorbing_elbo(x, diffusion_steps, seed) -> elbo_bpd float32 [B]: the
      one-call estimate of the T-step absorbing-diffusion ELBO (<= 0) of the
      same network, T = diffusion_steps >= 1 (tf_ardm.models.absorbing; OA
      models only).
  absorbing_sample(num, diffusion_steps, seed) -> samples int32
      [num, *shape], calls int32 [num] (network calls of each sample).
  loss_components() -> loss_components float32 [S*D] (bits/dim per step, the
      training-time EMA), heldout_loss_components float32 [S*D] or [0] (the
      held-out estimate; policies use it when present).
The model's config is returned by the `config` function and stored as JSON
beside the SavedModel in `assets.extra.json` (`read_config` reads it without
loading the SavedModel).
"""
import os

import numpy as np
import tensorflow as tf

from tf_ardm import atomic
from tf_ardm.generation import masks
from tf_ardm.generation import policies
from tf_ardm.generation import sampling
from tf_ardm.config import ModelConfig
from tf_ardm import models
from tf_ardm.models import checkpoints
from tf_ardm.errors import UserError
from tf_ardm.models import absorbing


class Servable(tf.Module):
  """The EMA denoiser of a trained model with its fixed order and policies."""

  def __init__(self, model):
    super().__init__()
    config = model.config
    self.denoiser = model.ema
    self.config_json = tf.constant(config.to_json())
    d, stages = config.num_steps, config.num_stages
    tracker = model.loss_tracker
    components = tracker.loss_components().numpy()
    heldout = getattr(model, "heldout_loss_components", None)
    self.loss_components_value = tf.constant(components)
    self.heldout_components_value = tf.constant(
        np.zeros([0], np.float32) if heldout is None else heldout, tf.float32)
    # Policies come from held-out estimates when present, else from training.
    source = heldout if heldout is not None else (
        components if tracker.count.numpy().sum() else None)
    self.has_loss_components = tf.constant(source is not None)
    budgets = policies.table_budgets(d)
    self.budgets = tf.constant(budgets, tf.int32)
    # One DP per stage on that stage's D components (spec §4.3): [S, n, max].
    self.policy_table = tf.constant(policies.policy_table(
        np.zeros([stages * d]) if source is None else source, stages, budgets))
    # A fixed order per stage, int32 [S, D]; row 0 is the OA order.
    self.sigma = tf.constant(np.concatenate(
        [masks.sample_sigma(1, d, seed=[config.sigma_seed, s]) for s in range(stages)]))
    self.num_steps, self.num_stages, self.num_classes = d, stages, config.num_classes
    shape = [None, *config.shape]
    x_spec = tf.TensorSpec(shape, tf.int32, name="x")
    scalar = lambda name: tf.TensorSpec([], tf.int32, name=name)
    policy_shape = [None] if stages == 1 else [stages, None]
    self.policy = tf.function(self._policy, input_signature=[scalar("budget")])
    self.log_prob = tf.function(self._log_prob, input_signature=[x_spec, scalar("budget")])
    self.elbo = tf.function(self._elbo, input_signature=[
        x_spec, tf.TensorSpec(policy_shape, tf.int32, name="policy"), scalar("seed")])
    self.step_loss = tf.function(self._step_loss, input_signature=[
        x_spec, tf.TensorSpec([None], tf.int32, name="t"), scalar("seed")])
    self.sample = tf.function(self._sample, input_signature=[
        scalar("num"), scalar("budget"), scalar("seed")])
    self.infill = tf.function(self._infill, input_signature=[
        x_spec, tf.TensorSpec(shape, tf.int32, name="known"), scalar("budget"),
        scalar("seed")])
    if self.num_stages == 1:  # Absorbing diffusion masks an OA model's input.
      self.absorbing_elbo = tf.function(self._absorbing_elbo, input_signature=[
          x_spec, scalar("diffusion_steps"), scalar("seed")])
      self.absorbing_sample = tf.function(self._absorbing_sample, input_signature=[
          scalar("num"), scalar("diffusion_steps"), scalar("seed")])
    self.loss_components = tf.function(
        lambda: {"loss_components": self.loss_components_value,
                 "heldout_loss_components": self.heldout_components_value},
        input_signature=[])
    self.config = tf.function(lambda: self.config_json, input_signature=[])

  def _check_x(self, x):
    """x, readable only after its range checks (so no lookup sees bad values)."""
    checks = [tf.debugging.assert_greater_equal(x, 0, message="x has values < 0"),
              tf.debugging.assert_less(x, self.num_classes,
                                       message=f"x has values >= K = {self.num_classes}")]
    with tf.control_dependencies(checks):
      return tf.identity(x)

  def _check_batch(self, x, other, name):
    """`other`, once its batch size is checked against that of x."""
    check = tf.debugging.assert_equal(
        tf.shape(other)[0], tf.shape(x)[0],
        message=f"{name} must have the batch size of x (one row per datapoint)")
    with tf.control_dependencies([check]):
      return tf.identity(other)

  def _check_budget(self, budget, max_budget=None):
    tf.debugging.assert_greater_equal(budget, 1, message="budget must be >= 1")
    tf.debugging.assert_less_equal(
        budget, self.num_steps if max_budget is None else max_budget,
        message=f"budget must be <= the number of unknown steps (D = {self.num_steps})")

  def _stage_policies(self, budget):
    """The optimal policies int32 [S, budget] for a budget in [1, D]."""
    self._check_budget(budget)
    d = self.num_steps
    tf.debugging.Assert(
        self.has_loss_components | tf.equal(budget, d),
        [f"the model has no loss components, so only budget D = {d} is "
         "possible; train it longer or run tf_ardm.evaluate --loss_components"])
    return tf.stack([tf.cond(
        tf.equal(budget, d), lambda: tf.range(d),
        lambda table=table: policies.lookup_tf(table, self.budgets, d, budget))
                     for table in tf.unstack(self.policy_table)])

  def _policy(self, budget):
    """The optimal policy: int32 [budget] (OA) or [S, budget] (Upscale)."""
    stage_policies = self._stage_policies(budget)
    return stage_policies[0] if self.num_stages == 1 else stage_policies

  def _stages(self, batch):
    return [tf.fill([batch], s) for s in range(self.num_stages)]

  def _log_prob(self, x, budget):
    x = self._check_x(x)
    batch = tf.shape(x)[0]
    stage_policies = self._stage_policies(budget)
    bits = tf.add_n([
        self.denoiser.log_prob_bits(x, tf.tile(self.sigma[s:s + 1], [batch, 1]),
                                    stage_policies[s], stage)
        for s, stage in enumerate(self._stages(batch))])
    return {"bits_per_dim": bits / float(self.num_steps)}

  def _random_order(self, x, seed, salt):
    batch = tf.shape(x)[0]
    seeds = tf.random.experimental.stateless_split(tf.stack([seed, salt]), 2)
    return masks.sample_sigma(batch, self.num_steps, seed=seeds[0]), seeds[1]

  def _elbo(self, x, policy, seed):
    x = self._check_x(x)
    tf.debugging.assert_positive(tf.size(policy), message="the policy is empty")
    tf.debugging.assert_equal(policy[..., 0], 0, message="a policy starts at 0")
    tf.debugging.assert_less(policy[..., -1], self.num_steps,
                             message=f"policy steps must be < D = {self.num_steps}")
    # Repeated entries are steps that generate nothing (weight 0).
    tf.debugging.assert_non_negative(policy[..., 1:] - policy[..., :-1],
                                     message="a policy must be non-decreasing")
    batch = tf.shape(x)[0]
    sigma, seed = self._random_order(x, seed, 1)
    policy = tf.reshape(policy, [self.num_stages, -1])
    index = tf.random.stateless_uniform([batch], seed, 0, tf.shape(policy)[1], tf.int32)
    stage = tf.random.stateless_uniform(
        [batch], tf.random.experimental.stateless_fold_in(seed, 1), 0,
        self.num_stages, tf.int32)
    return {"elbo_bpd": self.denoiser.elbo_with_policy(
        x, sigma, tf.gather(policy, stage), index, stage)}

  def _step_loss(self, x, t, seed):
    x = self._check_x(x)
    t = self._check_batch(x, t, "t")
    tf.debugging.assert_greater_equal(t, 0, message="t must be >= 0")
    total = self.num_stages * self.num_steps
    tf.debugging.assert_less(t, total, message=f"t must be < S·D = {total}")
    sigma, _ = self._random_order(x, seed, 3)
    terms = self.denoiser.elbo_terms(x, sigma, t)
    return {"loss_bpd": -terms["elbo_per_t"]}

  def _sample(self, num, budget, seed):
    tf.debugging.assert_positive(num, message="num must be >= 1")
    samples = sampling.sample(self.denoiser, num, self._stage_policies(budget),
                              tf.stack([seed, 2]))
    return {"samples": samples}

  def _absorbing_elbo(self, x, diffusion_steps, seed):
    x = self._check_x(x)
    return {"elbo_bpd": absorbing.elbo(self.denoiser, x, diffusion_steps,
                                       tf.stack([seed, 5]))}

  def _absorbing_sample(self, num, diffusion_steps, seed):
    tf.debugging.assert_positive(num, message="num must be >= 1")
    samples, calls = absorbing.sample(self.denoiser, num, diffusion_steps,
                                      tf.stack([seed, 6]))
    return {"samples": samples, "calls": calls}

  def _infill(self, x, known, budget, seed):
    """Samples the unknown positions; also -log2 p(x_unknown | x_known).

    In every stage the known positions come first in the order and hold that
    stage's x_future of x; the last stage leaves them equal to x.
    """
    x = self._check_x(x)
    known = self._check_batch(x, known, "known")
    batch = tf.shape(x)[0]
    known = tf.reshape(tf.cast(known > 0, tf.int32), [batch, self.num_steps])
    num_known = tf.reduce_sum(known, axis=1)
    self._check_budget(budget, tf.reduce_min(self.num_steps - num_known))
    seeds = tf.random.experimental.stateless_split(tf.stack([seed, 4]),
                                                   2 * self.num_stages)
    policy = sampling.infill_policy(num_known, self.num_steps, budget)
    state = tf.fill(tf.shape(x), self.denoiser.config.absorbing)
    bits = tf.zeros([batch])
    for s, stage in enumerate(self._stages(batch)):
      sigma = sampling.infill_order(known, seeds[2 * s])
      x_future, _ = self.denoiser.stage_inputs(x, stage)
      state = sampling.sample_with_policy(self.denoiser, x_future, sigma, policy,
                                          seeds[2 * s + 1], stage, past=state)
      bits += self.denoiser.log_prob_bits(x, sigma, policy, stage)
    return {"samples": state, "conditional_bits": bits}

  def signatures(self):
    signatures = {"serving_default": self.log_prob, "log_prob": self.log_prob,
                  "elbo": self.elbo, "step_loss": self.step_loss, "sample": self.sample,
                  "infill": self.infill, "policy": self.policy,
                  "loss_components": self.loss_components}
    if self.num_stages == 1:
      signatures.update(absorbing_elbo=self.absorbing_elbo,
                        absorbing_sample=self.absorbing_sample)
    return signatures


def export(model, export_dir):
  """Writes the servable SavedModel of `model` to export_dir, atomically."""
  return save(Servable(model), export_dir)


def save(module, export_dir):
  """Writes a Servable (or subclass) with its signatures to export_dir, atomically."""
  with atomic.directory(export_dir) as tmp:
    tf.saved_model.save(module, tmp, signatures=module.signatures())
    with open(os.path.join(tmp, "assets.extra.json"), "w") as f:
      f.write(module.config_json.numpy().decode())
  return export_dir


def resolve(export_dir):
  """The SavedModel directory of an export.

  `export_dir` is a SavedModel itself, or an export root written by
  `tf_ardm.cli.exports.write` whose latest `serving/<version>` is taken.
  """
  serving = os.path.join(export_dir, "serving")
  if not os.path.isfile(os.path.join(export_dir, "saved_model.pb")) and os.path.isdir(serving):
    versions = [v for v in os.listdir(serving) if v.isdigit()]
    if versions:
      return os.path.join(serving, max(versions, key=int))
  return export_dir


def read_config(path):
  """The ModelConfig of an export (an export root or one of its SavedModels),
  read from its `assets.extra.json` without loading the SavedModel.

  UserError when the file is missing or not a config.
  """
  file = os.path.join(resolve(path), "assets.extra.json")
  try:
    with open(file, encoding="utf-8") as f:
      return ModelConfig.from_json(f.read())
  except (OSError, ValueError, TypeError, KeyError) as e:
    raise UserError(f"cannot read the model config {file}: {e}") from None


def restore_model(path):
  """The model at `path`, rebuilt with its weights and loss components.

  path: a trained model directory (<workdir>/model, `checkpoints.restore`),
  or an export root or one of its SavedModels (servable or codec), whose
  model comes back with the export's EMA weights in its EMA network (the
  training network keeps its initial values) and the export's policies:
  its held-out loss components if it has them, else its training ones.
  UserError when it is none of these.
  """
  if checkpoints.is_model_dir(path):
    return checkpoints.restore(path)
  export_dir = resolve(path)
  loaded, config = load(export_dir)
  model = models.build(config)
  try:
    tf.train.Checkpoint(root=Servable(model)).read(
        os.path.join(export_dir, "variables", "variables")).assert_existing_objects_matched()
  except (tf.errors.OpError, AssertionError, ValueError) as e:
    raise UserError(f"cannot restore the weights of {export_dir}: "
                    f"{str(e).splitlines()[0]}") from e
  components = loaded.loss_components()
  heldout = components["heldout_loss_components"].numpy()
  model.heldout_loss_components = (heldout if heldout.size
                                   else components["loss_components"].numpy())
  return model


def load(path):
  """(servable functions, ModelConfig) of a model at `path`.

  path: a trained model directory (<workdir>/model), whose `Servable` is
  built in memory; an export root (its latest serving/<version>); or a
  SavedModel export (the servable or the codec export). UserError when it is
  none of these or does not load.
  """
  if checkpoints.is_model_dir(path):
    trained = checkpoints.restore(path)
    return Servable(trained), trained.config
  export_dir = resolve(path)
  if not os.path.isfile(os.path.join(export_dir, "saved_model.pb")):
    raise UserError(f"{export_dir} is not a SavedModel export (no saved_model.pb) "
                    f"nor a trained model directory (no {checkpoints.CONFIG})")
  try:
    loaded = tf.saved_model.load(export_dir)
    config = ModelConfig.from_json(loaded.config().numpy().decode())
  except (tf.errors.OpError, ValueError, AttributeError, OSError) as e:
    raise UserError(f"cannot load the SavedModel in {export_dir}: "
                    f"{str(e).splitlines()[0]}") from e
  return loaded, config
