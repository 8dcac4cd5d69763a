"""Upscale ARDMs (spec §6): S coarse-to-fine stages, each an OA-ARDM.

Stage s generates x_future = down^(S-1-s)(x) from x_past = down^(S-s)(x)
(tf_ardm.transitions). The network sees x_past with the known positions of
x_future written in, the known mask plus the one-hot stage as mask channels
(C + S of them) and the global step s*D + t as time. Training, policies,
sampling, the servable and the codec are the OA machinery with these stage
hooks.
"""
import tensorflow as tf

from tf_ardm import transitions
from tf_ardm.models import ardm


class UpscaleDenoiser(ardm.Denoiser):
  """A Denoiser whose stages follow the config's Upscale transition."""

  def __init__(self, config, network, name=None):
    super().__init__(config, network, name=name)
    self.space = transitions.StageSpace(config.upscale_transition, config.parametrization)

  def conditioning(self, t, known, stage):
    """Global time s*D + t; mask = known channels and the stage one-hot."""
    onehot = tf.one_hot(stage, self.num_stages)
    rank = len(known.shape)
    onehot = tf.reshape(onehot, tf.concat(
        [[-1], tf.ones([rank - 2], tf.int32), [self.num_stages]], 0))
    onehot = tf.broadcast_to(onehot, tf.concat([tf.shape(known)[:-1], [self.num_stages]], 0))
    return stage * self.num_steps + t, tf.concat([known, onehot], axis=-1)

  def stage_inputs(self, x, stage):
    return self.space.corrupt(x, stage)

  def stage_logits(self, logits, x_past, stage):
    return self.space.log_probs(logits, x_past, stage)

  def target(self, x_future, stage):
    return self.space.target(x_future, stage)

  def value(self, draw, x_past, stage):
    return self.space.value(draw, x_past, stage)

  @property
  def num_choices(self):
    return self.space.num_choices

  def choice_probs(self, logits, x_past, stage):
    return self.space.choice_probs(logits, x_past, stage)

  def choice(self, x_future, x_past, stage):
    return self.space.choice(x_future, x_past, stage)

  def chosen_value(self, choice, x_past, stage):
    return self.space.chosen_value(choice, x_past, stage)


class UpscaleARDM(ardm.OAARDM):
  """The Keras model of an Upscale ARDM: S*D steps, global t ~ U[0, S*D)."""

  denoiser_class = UpscaleDenoiser
