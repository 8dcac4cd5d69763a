"""The command layer: absl flags and the mains of python -m tf_ardm.<command>."""
