"""The command layer: absl flags and the mains of python -m tf_ardm.<command>.

Importing it quiets TensorFlow's C++ start-up logging (TF_CPP_MIN_LOG_LEVEL=3)
unless the variable is set already. That only works before TensorFlow is
imported, so the entry points tf_ardm.<command> import tf_ardm.cli first, and
nothing here imports TensorFlow.
"""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
