"""tf_ardm: Autoregressive Diffusion Models (Hoogeboom et al., ICLR 2022) in TF/Keras."""
__version__ = "0.1.0"
