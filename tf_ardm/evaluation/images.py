"""Image grids and text rendering of samples."""
import math

import numpy as np
from PIL import Image

from tf_ardm import atomic


def to_uint8(x, num_classes):
  """Scales values in [0, K) to 0..255 for display, uint8 same shape."""
  x = np.asarray(x, np.float64)
  return np.round(x * 255.0 / max(num_classes - 1, 1)).astype(np.uint8)


def grid(x, num_classes, scale=4, pad=1, cols=None):
  """Tiles images [N, H, W, C] into one uint8 [rows*(H+pad), cols*(W+pad), C].

  `cols` defaults to ceil(sqrt(N)); each image is scaled up `scale` times.
  """
  x = to_uint8(x, num_classes)
  n, h, w, c = x.shape
  cols = cols or int(math.ceil(math.sqrt(n)))
  rows = int(math.ceil(n / cols))
  out = np.full((rows * (h + pad) + pad, cols * (w + pad) + pad, c), 255, np.uint8)
  for i in range(n):
    r, q = divmod(i, cols)
    out[pad + r * (h + pad):pad + r * (h + pad) + h,
        pad + q * (w + pad):pad + q * (w + pad) + w] = x[i]
  return np.kron(out, np.ones((scale, scale, 1), np.uint8))


def save_grid(path, x, num_classes, scale=4, cols=None):
  """Writes a PNG grid of images [N, H, W, C] to `path`, atomically."""
  g = grid(x, num_classes, scale, cols=cols)
  with atomic.file(path) as tmp:
    Image.fromarray(g[..., 0] if g.shape[-1] == 1 else g).save(tmp, format="PNG")
