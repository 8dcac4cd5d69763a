"""Tiling images: a mosaic of many images, and the patches of one image.

An image is an array [H, W, C] of any dtype; a set of N images of one size
is [N, h, w, C]. The tiles are laid out row-major: tile i sits in row
i // cols and column i % cols of the grid.
"""
import math

import numpy as np


def mosaic(images, cols=None, fill=0, gap=0):
  """One image [rows * (h + gap) + gap, cols * (w + gap) + gap, C] of images [N, h, w, C].

  cols defaults to ceil(sqrt(N)), and rows = ceil(N / cols). The unused cells
  of the last row and `gap` rows and columns between and around the images
  hold `fill`. The dtype is that of `images`.
  """
  images = np.asarray(images)
  n, h, w, c = images.shape
  cols = cols or max(1, math.ceil(math.sqrt(n)))
  rows = -(-n // cols)
  cells = np.full((rows * cols, h + gap, w + gap, c), fill, images.dtype)
  cells[:n, gap:, gap:] = images
  grid = cells.reshape(rows, cols, h + gap, w + gap, c).transpose(0, 2, 1, 3, 4)
  grid = grid.reshape(rows * (h + gap), cols * (w + gap), c)
  return np.pad(grid, ((0, gap), (0, gap), (0, 0)), constant_values=fill)


def patches(image, size):
  """The patches [rows * cols, ph, pw, C] of image [H, W, C], size = (ph, pw).

  rows = ceil(H / ph) and cols = ceil(W / pw); the right and bottom edges
  are padded by repeating the last column and row. `from_patches` inverts it.
  """
  (h, w, c), (ph, pw) = image.shape, size
  rows, cols = -(-h // ph), -(-w // pw)
  image = np.pad(image, ((0, rows * ph - h), (0, cols * pw - w), (0, 0)), mode="edge")
  return image.reshape(rows, ph, cols, pw, c).transpose(0, 2, 1, 3, 4).reshape(
      rows * cols, ph, pw, c)


def from_patches(tiles, shape):
  """The image of `shape` [H, W, C] from its `patches` [N, ph, pw, C]."""
  h, w = shape[:2]
  return mosaic(tiles, cols=-(-w // tiles.shape[2]))[:h, :w]
