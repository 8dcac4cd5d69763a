"""tf.distribute strategy selection (--strategy)."""
import json
import os

import tensorflow as tf

from tf_ardm.errors import UserError

NAMES = ("mirrored", "multi_worker", "one_device", "tpu")


def build(name, tpu=None):
  """The strategy `name`.

  mirrored: all local GPUs (or the CPU); multi_worker: the cluster in the
  TF_CONFIG environment variable (one process per machine); one_device: the
  first GPU, or the CPU; tpu: the TPU `tpu` (a name or grpc:// address; None
  for a TPU VM's local TPU), found by TPUClusterResolver.
  """
  if name == "mirrored":
    return tf.distribute.MirroredStrategy()
  if name == "multi_worker":
    try:
      json.loads(os.environ.get("TF_CONFIG") or "{}")
    except ValueError as e:
      raise UserError(f"TF_CONFIG is not valid JSON: {e}") from None
    return tf.distribute.MultiWorkerMirroredStrategy()
  if name == "one_device":
    gpus = tf.config.list_logical_devices("GPU")
    return tf.distribute.OneDeviceStrategy(gpus[0].name if gpus else "/cpu:0")
  if name == "tpu":
    try:
      resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu)
      tf.config.experimental_connect_to_cluster(resolver)
      tf.tpu.experimental.initialize_tpu_system(resolver)
    except (ValueError, tf.errors.OpError) as e:
      raise UserError(f"no TPU found ({str(e).splitlines()[0]}); pass --tpu=NAME "
                      "or run on a TPU VM") from None
    return tf.distribute.TPUStrategy(resolver)
  raise ValueError(f"unknown strategy {name!r}")
