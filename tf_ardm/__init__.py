"""tf_ardm: Autoregressive Diffusion Models (Hoogeboom et al., ICLR 2022) in TF/Keras."""
import os

# Quiet TensorFlow's C++ start-up chatter unless the user asked for it.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

__version__ = "0.1.0"
