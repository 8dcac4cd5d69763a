"""Objectives: the ARDM model classes own training and likelihood."""
from tf_ardm.models.absorbing import AbsorbingDiffusion
from tf_ardm.models.ardm import OAARDM
from tf_ardm.models.upscale import UpscaleARDM

# The Keras model class of each ModelConfig.objective (order-agnostic models).
MODELS = {cls.OBJECTIVE: cls for cls in (OAARDM, AbsorbingDiffusion)}


def build(config, **kwargs):
  """The Keras model for `config` (keyword args as OAARDM's): an UpscaleARDM
  for model_type 'upscale', else the class that trains `config.objective`."""
  if config.model_type == "upscale":
    return UpscaleARDM(config, **kwargs)
  return MODELS[config.objective](config, **kwargs)
