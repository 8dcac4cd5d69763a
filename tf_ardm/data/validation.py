"""Checks of user data: integer values in [0, K), datapoints of a model's shape.

Each check raises `UserError` with one line that names the data (`what`: a
path, a flag, 'data'), what was expected and what was got.
"""
import numpy as np

from tf_ardm.errors import UserError


def check_values(x, num_classes, what="data"):
  """x as int64 (same shape); UserError unless it holds integers in [0, K).

  Integer and bool arrays of any shape pass, empty ones too; K = num_classes.
  """
  x = np.asarray(x)
  if not (np.issubdtype(x.dtype, np.integer) or x.dtype == bool):
    raise UserError(f"{what}: expected integers, got dtype {x.dtype}")
  if x.size and (x.min() < 0 or x.max() >= num_classes):
    raise UserError(f"{what}: values must lie in [0, {num_classes}), got "
                    f"[{x.min()}, {x.max()}]")
  return x.astype(np.int64)


def check_datapoints(x, shape, num_classes, what="data"):
  """x as int32 [N, *shape]; UserError for another shape, a non-integer
  dtype or values outside [0, K)."""
  x = np.asarray(x)
  shape = tuple(shape)
  if x.shape[1:] != shape or x.ndim != len(shape) + 1:
    raise UserError(f"{what}: expected datapoints of shape [N, {', '.join(map(str, shape))}], "
                    f"got {list(x.shape)}")
  return check_values(x, num_classes, what).astype(np.int32)
