r"""Bits/dim against tile size on the photos test regions: what context is worth.

  .venv/bin/python benchmarks/tile_context.py --model=runs/photos_lm/model \
      [--tiles=16,32,64] [--passes=2] [--batch_positions=196608]

The U-Net is fully convolutional: its weights don't depend on the tile's
height and width, and its time input t * 1000 / (S * D) is the known
fraction of the tile. So one trained model (a directory of tf_ardm.train)
is rebuilt at every tile size (checkpoints.restore(shape=...)) and scores
the same pixels cut into tiles of each size. A tile coded on its own sees
nothing of its neighbours; a bigger tile gives more of its positions
context, at the price of a bigger network call.

Pixels: the test region of every photograph of `photos` (its rightmost
fifth), each cropped from its top-left corner to a multiple of the largest
tile, so that every tile size covers exactly the same pixels.

Estimator: the single-step ELBO of spec §3.1 with D calls (the uniform
policy), for a random order per tile and a *stratified* step: in each pass
the N tiles take steps t = floor((i + u) D / N), i = 0 .. N - 1, shuffled,
one uniform u per pass, so that every fraction of the order is covered
however few tiles there are (an unbiased estimate with much less variance
than a uniform t per tile when N is small). The standard error is over the
passes' means. Prints one row per tile size: tiles, positions per call,
bits/dim ± s.e., and the ratio to the first size; then the lossless image
codecs of tf_ardm.evaluation.baselines (PNG, WebP, JPEG-XL, JPEG-LS,
JPEG 2000, QOI, through imagecodecs, each checked to decode exactly) on the
same cropped regions, each region one image, with the ARDM's best size's
ratio to each. The ARDM figures are negative ELBOs with D calls per tile:
what a codec of that model would pay at full budget, up to the estimate's
error, not file bytes (benchmarks/photos.py measures those).
"""
import os
import sys
import time

from absl import app
from absl import flags
import numpy as np
import tensorflow as tf

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from tf_ardm.evaluation import baselines  # pylint: disable=g-import-not-at-top,wrong-import-position
from tf_ardm.data import photos  # pylint: disable=g-import-not-at-top,wrong-import-position
from tf_ardm.generation import masks  # pylint: disable=g-import-not-at-top,wrong-import-position
from tf_ardm.models import checkpoints  # pylint: disable=g-import-not-at-top,wrong-import-position

flags.DEFINE_string("model", None, "A trained model directory (tf_ardm.train's "
                    "<workdir>/model) of a U-Net image model of 8-bit RGB.")
flags.DEFINE_list("tiles", ["16", "32", "64"], "Tile sizes (pixels a side), ascending.")
flags.DEFINE_integer("passes", 2, "Passes over the tiles (each a stratified set of steps).",
                     lower_bound=2)
flags.DEFINE_integer("batch_positions", 3 * 2**16, "Sub-pixels per network call.",
                     lower_bound=1)
flags.DEFINE_integer("seed", 0, "Seed of the orders and steps.")
FLAGS = flags.FLAGS


def test_pixels(largest):
  """[uint8 [H, W, 3]]: each test region cropped to multiples of `largest`."""
  out = []
  for region in photos.test_regions():
    h, w = (region.shape[0] // largest) * largest, (region.shape[1] // largest) * largest
    if h and w:
      out.append(region[:h, :w])
  return out


def tiles(regions, size):
  """int32 [N, size, size, 3]: every region cut into non-overlapping tiles."""
  return np.concatenate([photos.patches(r, size, size) for r in regions]).astype(np.int32)


def stratified_steps(n, d, rng):
  """int32 [n]: t_i = floor((i + u) d / n), shuffled, one u ~ U[0, 1)."""
  t = np.floor((np.arange(n) + rng.uniform()) * d / n).astype(np.int64)
  return rng.permutation(np.minimum(t, d - 1)).astype(np.int32)


def negative_elbo(model, x, passes, batch, seed):
  """(mean, s.e. over passes) of the negative ELBO in bits/dim, and seconds."""
  d = model.config.num_steps
  terms = tf.function(lambda x, sigma, t: model.ema.elbo_terms(x, sigma, t)["elbo"],
                      reduce_retracing=True)
  rng = np.random.default_rng(seed)
  means, start = [], time.perf_counter()
  for p in range(passes):
    steps, values = stratified_steps(len(x), d, rng), []
    for i in range(0, len(x), batch):
      xb = tf.constant(x[i:i + batch])
      sigma = masks.sample_sigma(tf.shape(xb)[0], d, seed=tf.constant([seed, p * 100003 + i]))
      values.append(-terms(xb, sigma, tf.constant(steps[i:i + batch])).numpy())
    means.append(np.concatenate(values).mean())
  means = np.array(means)
  return means.mean(), means.std(ddof=1) / np.sqrt(passes), time.perf_counter() - start


def main(argv):
  del argv
  if not FLAGS.model:
    raise app.UsageError("--model is required")
  sizes = sorted(int(s) for s in FLAGS.tiles)
  regions = test_pixels(sizes[-1])
  pixels = sum(r.shape[0] * r.shape[1] for r in regions)
  print(f"photos test regions, cropped to multiples of {sizes[-1]}: {len(regions)} images, "
        f"{pixels} pixels; model {FLAGS.model}; {FLAGS.passes} passes, stratified steps")
  print(f"{'tile':>7} {'tiles':>6} {'positions/call':>14} {'bits/dim':>9} {'s.e.':>6} "
        f"{'ratio':>6} {'seconds':>8}")
  first, best = None, None
  for size in sizes:
    model = checkpoints.restore(FLAGS.model, shape=[size, size, 3])
    x = tiles(regions, size)
    batch = max(1, FLAGS.batch_positions // model.config.num_steps)
    mean, se, seconds = negative_elbo(model, x, FLAGS.passes, batch, FLAGS.seed)
    first = first or mean
    best = mean if best is None else min(best, mean)
    print(f"{size:>3}x{size:<3} {len(x):>6} {batch * model.config.num_steps:>14} {mean:>9.4f} "
          f"{se:>6.4f} {mean / first:>6.3f} {seconds:>8.1f}", flush=True)

  dims = 3 * pixels
  print(f"\nThe same pixels, each region one image ({len(regions)} images):")
  print(f"{'codec':<10} {'bytes':>9} {'bits/dim':>9} {'ARDM ELBO / codec':>18}")
  for codec in baselines.IMAGE_CODECS:
    if baselines.image_codec_available(codec) and all(
        baselines.image_fits(r, codec) for r in regions):
      total = sum(len(baselines.encode_image(r, codec)) for r in regions)
      print(f"{codec:<10} {total:>9} {8 * total / dims:>9.4f} {best / (8 * total / dims):>18.3f}")
    else:
      print(f"{codec:<10} {'not available in this imagecodecs build':>38}")


if __name__ == "__main__":
  app.run(main)
