"""tf_ardm: Autoregressive Diffusion Models (Hoogeboom et al., ICLR 2022) in TF/Keras.

Importing the package sets one process-wide setting: TF_USE_LEGACY_KERAS=1
in the environment, unless it is set already. With it, TensorFlow >= 2.16
makes tf.keras the Keras 2 of the tf-keras package (the TF 2.17 stack of
setup.py) instead of Keras 3, which this code is not written for; TF 2.14
ignores it. TensorFlow reads it when tf.keras is first used (and, for the
`tensorflow.keras` import paths, when it is imported), so import tf_ardm
before TensorFlow. Subprocesses inherit it, as they should. Nothing else
(logging included) is changed; only the commands (tf_ardm.cli) quiet
TensorFlow.
"""
import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

__version__ = "0.1.0"
