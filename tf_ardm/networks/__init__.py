"""Order-agnostic networks: f(x_in, t, known_mask) -> logits.

Every network maps int32 x_in [B, *shape], int32 t [B] (the number of known
variables) and a float32 mask [B, *shape] to float32 logits [B, *shape, K].
`build(config)` makes the one a `ModelConfig` names; with the logistic
mixture output, its logits are the mixture's log-probabilities
(logistic_mixture.LogisticMixture around a body with 3M outputs).
"""
from tf_ardm.networks import logistic_mixture
from tf_ardm.networks import precision as precision_lib
from tf_ardm.networks.transformer import Transformer
from tf_ardm.networks.unet import UNet


def build(config, name=None, precision="float32"):
  """The network named by `config.network` (a Keras layer), sized by its config.

  precision: a key of `precision.PRECISIONS`, the dtype its layers compute
  in; the variables and the logits are float32 in every precision.
  """
  mixture = config.output_distribution == "logistic_mixture"
  with precision_lib.scope(precision):
    if config.network == "unet":
      # The mixture starts near-uniform from zero parameters (spec §7.4).
      body = UNet(config.shape, config.input_classes, config.network_outputs,
                  max_time=config.total_steps, name=None if mixture else name,
                  output_initializer="zeros" if mixture else None,
                  **config.network_kwargs)
    elif config.network == "transformer":
      body = Transformer(config.shape[0], config.input_classes, config.network_outputs,
                         name=None if mixture else name, **config.network_kwargs)
    else:
      raise ValueError(f"unknown network {config.network!r}")
  if mixture:
    return logistic_mixture.LogisticMixture(body, config.num_classes, config.num_mixtures,
                                            name=name)
  return body
