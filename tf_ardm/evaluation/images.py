"""Image grids of samples, for viewing."""
import numpy as np
from PIL import Image

from tf_ardm import atomic
from tf_ardm.data import tiles


def to_uint8(x, num_classes):
  """Scales values in [0, K) to 0..255 for display, uint8 same shape."""
  x = np.asarray(x, np.float64)
  return np.round(x * 255.0 / max(num_classes - 1, 1)).astype(np.uint8)


def grid(x, num_classes, scale=4, pad=1, cols=None):
  """Tiles images [N, H, W, C] with values in [0, K) into one uint8 picture.

  The picture is [rows * (H + pad) + pad, cols * (W + pad) + pad, C] (see
  `tf_ardm.data.tiles.mosaic`; cols defaults to ceil(sqrt(N))), with `pad`
  white (255) pixels between and around the images, then scaled up `scale`
  times in height and width.
  """
  g = tiles.mosaic(to_uint8(x, num_classes), cols, fill=255, gap=pad)
  return np.kron(g, np.ones((scale, scale, 1), np.uint8))


def save_grid(path, x, num_classes, scale=4, cols=None):
  """Writes a PNG grid of images [N, H, W, C] to `path`, atomically."""
  g = grid(x, num_classes, scale, cols=cols)
  with atomic.file(path) as tmp:
    Image.fromarray(g[..., 0] if g.shape[-1] == 1 else g).save(tmp, format="PNG")
