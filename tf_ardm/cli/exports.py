"""The two exports of a trained model, in one export root.

  <root>/serving/<version>/  the servable: pure TF ops, TF Serving's layout.
  <root>/codec/              the servable's functions plus compress and
                             decompress (needs the range coder ops: import
                             tensorflow_compression_ops under TF 2.17,
                             tensorflow_compression under TF 2.14).

It writes both, so it sits above tf_ardm.serving and tf_ardm.coding.
"""
import os

from tf_ardm.coding import codec
from tf_ardm.serving import servable


def write(model, root, version=1, max_batch=None, data_dir=None):
  """Writes the exports of `model` under `root`; returns their paths.

  The codec's integer network is calibrated on codec.calibration_data (the
  first training datapoints, from data_dir where the dataset needs one).
  """
  calibration = codec.calibration_data(model.config, data_dir)
  serving = servable.export(model, os.path.join(root, "serving", str(version)))
  return serving, codec.export(model, os.path.join(root, "codec"), calibration, max_batch)
