"""Line plots rendered to PNG files or uint8 arrays (matplotlib, Agg backend)."""
import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top,wrong-import-position
import numpy as np
from PIL import Image

from tf_ardm import atomic


def _figure(series, xlabel, ylabel, title=None, logx=False):
  fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
  for item in series:
    label, y = item[0], np.asarray(item[1])
    x = np.asarray(item[2]) if len(item) > 2 else np.arange(len(y))
    ax.plot(x, y, marker="o" if len(y) < 40 else None, label=label)
  if logx:
    ax.set_xscale("log", base=2)
  ax.set_xlabel(xlabel)
  ax.set_ylabel(ylabel)
  if title:
    ax.set_title(title)
  ax.grid(alpha=0.3)
  ax.legend()
  fig.tight_layout()
  return fig


def line_plot(series, xlabel, ylabel, title=None, logx=False):
  """Renders [(label, y[, x]), ...] to a uint8 RGB array [H, W, 3]."""
  fig = _figure(series, xlabel, ylabel, title, logx)
  buf = io.BytesIO()
  fig.savefig(buf, format="png")
  plt.close(fig)
  return np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))


def save_line_plot(path, series, xlabel, ylabel, title=None, logx=False):
  """Writes the plot of `line_plot` to a PNG file at `path`, atomically."""
  image = Image.fromarray(line_plot(series, xlabel, ylabel, title, logx))
  with atomic.file(path) as tmp:
    image.save(tmp, format="PNG")
