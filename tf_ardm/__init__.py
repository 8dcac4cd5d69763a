"""tf_ardm: Autoregressive Diffusion Models (Hoogeboom et al., ICLR 2022) in TF/Keras.

Importing the package changes no process-wide setting (environment, logging);
only the commands (tf_ardm.cli) quiet TensorFlow.
"""

__version__ = "0.1.0"
