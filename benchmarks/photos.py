r"""The ARDM photo codec against the lossless image codecs, on whole held-out photographs.

  .venv/bin/python benchmarks/photos.py [--model=savedmodels/photos_upscale4] \
      [--photos=china,motorcycle_left,grace_hopper] [--crop=64] [--budget=100] \
      [--peers_only]

Each image is one file, coded whole by every codec:
  * the test regions of the `photos` corpus (tf_ardm/data/photos.py: the
    rightmost fifth of each photograph, no training patch touches them), one
    image per view: china, flower, astronaut, chelsea, coffee,
    hubble_deep_field, immunohistochemistry, motorcycle_left,
    motorcycle_right, retina, rocket;
  * grace_hopper: matplotlib's sample photograph (mpl-data/sample_data/
    grace_hopper.jpg, 600 x 512), in no split of the corpus: a photograph
    the model never saw in training nor in evaluation.

The ARDM codes an image as `python -m tf_ardm.compress` does (the same
functions): the image is tiled into the model's patches (edges padded), all
patches one solid stream, in an .ardm container; its bytes are the file's
whole size. Every .ardm file is decoded as `python -m tf_ardm.decompress`
does and checked to give the image back exactly. "exact bits" is the
model's code length for the patches under the same order and budget,
-log2 p(x | sigma, policy) (the float model; the file adds the integer
coder's rounding, the stream framing and the container). The peers are the
lossless codecs of tf_ardm.evaluation.baselines, in-process (PNG, WebP,
JPEG-XL, JPEG-LS, JPEG 2000, QOI), each round trip checked exact. Times are
seconds per image (the ARDM's include tiling, packing and rebuilding the
PNG); the machine's load moves them.

The ARDM is slow on a CPU. With the shipped Upscale-4 model at the default
budget (100 calls per stage, as tf_ardm.compress), a 16 x 16 patch takes
about 0.8 s each way when patches are batched (batches of up to 21; the
codec's earlier measurement, not re-measured on whole regions): a whole
427 x 128 region (216 patches) about 3 min each way, and all 12 images
(5,583 patches once the edges are padded: 4,367 of the corpus' test regions
and 1,216 of grace_hopper) an estimated 2.5 hours each way, 5 to 6 hours
with the decode check and the exact code length, on the 2-core CPU (an
estimate from the per-patch cost; the full run has not been made). A small
crop pays a whole batch's calls: the top-left 32 x 32 of china (4 patches)
took 36 s to encode and 34 s to decode here. The flags limit the work:
  --photos      the images, by name (default: all 12);
  --crop        code the top-left crop x crop pixels of each image (0: whole);
  --budget      network calls per stage (default 100; the model's maximum 768);
  --peers_only  skip the ARDM (the peers take about a minute for everything,
                most of it WebP's and JPEG-XL's slowest settings).
The full run: `.venv/bin/python benchmarks/photos.py` (hours, above); the
check that it works end to end: `.venv/bin/python benchmarks/photos.py
--photos=china --crop=32` (about 2 minutes).
"""
import argparse
import io
import os
import sys
import time

import numpy as np
from PIL import Image

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # Before tf_ardm imports TF.
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from tf_ardm.cli import compress as compress_cli  # noqa: E402
from tf_ardm.cli import decompress as decompress_cli  # noqa: E402
from tf_ardm.coding import coder as coder_lib  # noqa: E402
from tf_ardm.coding import container  # noqa: E402
from tf_ardm.data import photos  # noqa: E402
from tf_ardm.errors import UserError  # noqa: E402
from tf_ardm.evaluation import baselines  # noqa: E402

RATIO_TO = ("WebP", "JPEG-XL")


def images(names):
  """{name: uint8 [H, W, 3]}: the corpus' test regions and the unseen photograph."""
  unseen, unseen_image = photos.unseen_photograph()
  everything = dict(zip(photos.test_region_names(), photos.test_regions()))
  everything[unseen] = unseen_image
  if names is None:
    return everything
  missing = [n for n in names if n not in everything]
  if missing:
    raise UserError(f"unknown photos {missing}; choose from {', '.join(everything)}")
  return {n: everything[n] for n in names}


def ardm(coder, name, image, budget):
  """(file bytes, exact bits, encode s, decode s) of one image as one .ardm file."""
  start = time.perf_counter()
  x = container.to_datapoints(image.astype(np.int64), coder.config, name)
  original = container.Original(container.PNG, image.shape)
  streams = compress_cli.compress_all(coder, [x], budget)[0]
  data = container.pack(original, streams, coder.fingerprint, coder.arithmetic)
  middle = time.perf_counter()
  unpacked = container.unpack(data, name)
  (back,), _ = decompress_cli.decompress_all(coder, [(name, *unpacked)])
  png = container.rebuild(back, unpacked[0], coder.config, name)
  end = time.perf_counter()
  with Image.open(io.BytesIO(png)) as decoded:
    if not np.array_equal(back, x) or not np.array_equal(np.asarray(decoded), image):
      raise AssertionError(f"{name}: the .ardm file did not decode to the image")
  return len(data), float(coder.exact_bits(x, budget).sum()), middle - start, end - middle


def peers(image):
  """{codec: (bytes, encode s, decode s)} of the available lossless peers."""
  out = {}
  for codec in baselines.IMAGE_CODECS:
    if baselines.image_codec_available(codec) and baselines.image_fits(image, codec):
      data, enc, dec = baselines.encode_image(image, codec, timed=True)
      out[codec] = (len(data), enc, dec)
  return out


def print_table(header, rows):
  widths = [max(len(str(r[i])) for r in [header] + rows) for i in range(len(header))]
  for r in [header, ["-" * w for w in widths]] + rows:
    print("  " + "  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w)
                           for i, (c, w) in enumerate(zip(r, widths))))


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--model", default=os.path.join(REPO, "savedmodels", "photos_upscale4"))
  parser.add_argument("--photos", help="comma-separated image names (default: all)")
  parser.add_argument("--crop", type=int, default=0,
                      help="code the top-left crop x crop of each image (0: whole)")
  parser.add_argument("--budget", type=int,
                      help="network calls per stage (default: tf_ardm.compress's, "
                           "min(D, 100))")
  parser.add_argument("--peers_only", action="store_true", help="skip the ARDM")
  args = parser.parse_args()
  chosen = images(args.photos.split(",") if args.photos else None)
  if args.crop:
    chosen = {n: np.ascontiguousarray(im[:args.crop, :args.crop]) for n, im in chosen.items()}
  coder = budget = None
  if not args.peers_only:
    coder = coder_lib.load(args.model)
    if tuple(coder.shape[-1:]) != (3,) or coder.config.num_classes != 256:
      raise UserError(f"{args.model} does not code 8-bit RGB images")
    budget = coder.check_budget(args.budget or min(coder.num_steps, 100))
    print(f"model {args.model}: patches {coder.shape}, {coder.num_stages} stage(s), budget "
          f"{budget} network calls per stage, batches of up to {coder.max_batch}")
  codecs = (["ARDM"] if coder else []) + [
      c for c in baselines.IMAGE_CODECS if baselines.image_codec_available(c)]
  results = {}  # name -> {codec: (bytes, enc s, dec s)}
  exact = {}
  for name, image in chosen.items():
    row = peers(image)
    if coder:
      size, exact[name], enc, dec = ardm(coder, name, image, budget)
      row = {"ARDM": (size, enc, dec), **row}
    results[name] = row
    print(f"  {name} {image.shape[0]}x{image.shape[1]}: "
          + ", ".join(f"{c} {v[0]}" for c, v in row.items()), flush=True)

  def total(codec, field):
    values = [r[codec][field] for r in results.values() if codec in r]
    return sum(values) if len(values) == len(results) else None

  names = list(results) + ["total"]
  pixels = {n: chosen[n].shape[0] * chosen[n].shape[1] for n in results}
  pixels["total"] = sum(pixels.values())

  def size(name, codec):
    return total(codec, 0) if name == "total" else results[name].get(codec, (None,))[0]

  header = ["image", "pixels"] + (["ARDM exact bits"] if coder else []) + [
      f"{c} bytes" for c in codecs] + (
      [f"ARDM / {c}" for c in RATIO_TO if c in codecs] if coder else [])
  rows = []
  for name in names:
    line = [name, pixels[name]]
    if coder:
      line.append(f"{(sum(exact.values()) if name == 'total' else exact[name]):.1f}")
    line += ["n/a" if size(name, c) is None else size(name, c) for c in codecs]
    if coder:
      line += [f"{size(name, 'ARDM') / size(name, c):.3f}" if size(name, c) else "n/a"
               for c in RATIO_TO if c in codecs]
    rows.append(line)
  print(f"\nbytes per image file (bits per sub-pixel = 8 x bytes / (3 x pixels))"
        + (f"; ARDM budget {budget}" if coder else ""))
  print_table(header, rows)
  bpsp = [[name] + [f"{8 * size(name, c) / (3 * pixels[name]):.3f}" if size(name, c)
                    else "n/a" for c in codecs] for name in names]
  print("\nbits per sub-pixel")
  print_table(["image"] + codecs, bpsp)
  times = []
  for name in names:
    line = [name]
    for c in codecs:
      if name == "total":
        enc, dec = total(c, 1), total(c, 2)
      else:
        enc, dec = results[name].get(c, (None, None, None))[1:]
      line.append("n/a" if enc is None else f"{enc:.3f} / {dec:.3f}")
    times.append(line)
  print("\nseconds per image, encode / decode")
  print_table(["image"] + codecs, times)


if __name__ == "__main__":
  try:
    main()
  except UserError as e:
    sys.exit(f"error: {e}")
