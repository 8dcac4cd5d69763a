"""The exports of a trained model, in one export root.

  <root>/serving/<version>/  the servable: pure TF ops, TF Serving's layout.
"""
import os

from tf_ardm import servable


def write(model, root, version=1):
  """Writes the servable export of `model` under `root`; returns its path."""
  return servable.export(model, os.path.join(root, "serving", str(version)))
