"""Objectives: the ARDM model classes own training and likelihood."""
from tf_ardm.models.absorbing import AbsorbingDiffusion
from tf_ardm.models.ardm import OAARDM

# The Keras model class of each ModelConfig.objective.
MODELS = {cls.OBJECTIVE: cls for cls in (OAARDM, AbsorbingDiffusion)}


def build(config, **kwargs):
  """The Keras model that trains `config.objective` (keyword args as OAARDM's)."""
  return MODELS[config.objective](config, **kwargs)
