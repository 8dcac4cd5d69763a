"""Order-agnostic networks: f(x_in, t, known_mask) -> logits.

Every network maps int32 x_in [B, *shape], int32 t [B] (the number of known
variables) and a float32 mask [B, *shape] to float32 logits [B, *shape, K].
`build(config)` makes the one a `ModelConfig` names.
"""
from tf_ardm.networks import precision as precision_lib
from tf_ardm.networks.transformer import Transformer
from tf_ardm.networks.unet import UNet


def build(config, name=None, precision="float32"):
  """The network named by `config.network` (a Keras layer), sized by its config.

  precision: a key of `precision.PRECISIONS`, the dtype its layers compute
  in; the variables and the logits are float32 in every precision.
  """
  with precision_lib.scope(precision):
    if config.network == "unet":
      return UNet(config.shape, config.input_classes, config.output_classes,
                  max_time=config.total_steps, name=name, **config.network_kwargs)
    if config.network == "transformer":
      return Transformer(config.shape[0], config.input_classes,
                         config.output_classes, name=name, **config.network_kwargs)
  raise ValueError(f"unknown network {config.network!r}")
