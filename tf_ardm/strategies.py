"""tf.distribute strategy selection (--strategy)."""
import tensorflow as tf

NAMES = ("mirrored", "multi_worker", "one_device")


def build(name):
  """mirrored: all local GPUs (or the CPU); multi_worker: from TF_CONFIG;
  one_device: the first GPU, or the CPU."""
  if name == "mirrored":
    return tf.distribute.MirroredStrategy()
  if name == "multi_worker":
    return tf.distribute.MultiWorkerMirroredStrategy()
  if name == "one_device":
    # A one-device MirroredStrategy: Keras' BackupAndRestore refuses
    # OneDeviceStrategy, and this behaves the same.
    gpus = tf.config.list_logical_devices("GPU")
    return tf.distribute.MirroredStrategy([gpus[0].name if gpus else "/cpu:0"])
  raise ValueError(f"unknown strategy {name!r}")
