"""`photos`: 8-bit RGB patches of the colour photographs installed packages ship.

The corpus (nothing is downloaded; every file is inside an installed wheel):

  * scikit-learn (`sklearn.datasets.load_sample_images`): china and flower,
    427 x 640 each;
  * scikit-image (`skimage.data`, the files inside the wheel's
    skimage/data/ folder): astronaut (512 x 512), chelsea (300 x 451),
    coffee (400 x 600), hubble_deep_field (872 x 1000),
    immunohistochemistry (512 x 512, a micrograph), the stereo pair
    motorcycle_left / motorcycle_right (500 x 741 each, one photograph:
    `skimage.data.stereo_motorcycle`), retina (1411 x 1411, a fundus
    photograph) and rocket (427 x 640).

Left out of scikit-image's data: the grey photographs (camera, coins, moon,
page, text, grass, gravel, brick, cell, clock_motion, microaneurysms, and
lfw_subset's 25 x 25 faces), because the dataset is RGB; the synthetic or
drawn images (logo, colorwheel, chessboard, horse, binary_blobs,
shepp_logan_phantom, checkerboard); the
palette GIF no_time_for_that_tiny.gif (256 colours, quantised, and an
animation) and multipage.tif (synthetic); and every data set that
`skimage.data` fetches over the network with pooch (kidney, lily, cells3d,
brain, eagle, human_mitosis, skin, vortex, protein_transport, ...), which
this package never does.

Each photograph is split by region: the rightmost fifth of its columns is
the test region, the rest the training region. The stereo pair is one
photograph: both views have the same width, so the same columns of both are
held out (the two views show the same scene, so a training patch of one
view must not see the test region of the other). Test patches tile the test
region without overlap (from its top-left corner; a remainder narrower than
a patch is dropped); training patches are cut from the training region with
stride patch_size // 2. No test patch shares a pixel with a training patch.
The split is fixed: the same photographs, in the order of `NAMES`, the same
columns, every time.

`test_regions()` gives the test regions as whole images (for benchmarks of
image codecs), and `unseen_photograph()` one photograph that is in no split
(matplotlib's sample grace_hopper.jpg).
"""
import functools

import numpy as np

TEST_FRACTION = 5  # The rightmost 1/TEST_FRACTION of the columns is test.
PATCH_SIZES = (16, 32)
# The photographs, in the order of the splits. scikit-learn's come first, so
# the first training and test patches are those of the two-photograph corpus
# this dataset used to be (the codec's calibration data and the test fixture
# photos2.png are cut from them).
SKLEARN = ("china", "flower")
SKIMAGE = ("astronaut", "chelsea", "coffee", "hubble_deep_field",
           "immunohistochemistry", "motorcycle", "retina", "rocket")
NAMES = SKLEARN + SKIMAGE
STEREO = {"motorcycle": ("motorcycle_left", "motorcycle_right")}


def _load(name):
  """uint8 [V, H, W, 3]: the V views (1, or 2 for the stereo pair) of `name`."""
  if name in SKLEARN:
    from sklearn import datasets as sk_datasets  # pylint: disable=g-import-not-at-top
    return sk_datasets.load_sample_image(f"{name}.jpg")[None]
  from skimage import data as sk_data  # pylint: disable=g-import-not-at-top
  if name == "motorcycle":
    left, right, _ = sk_data.stereo_motorcycle()
    return np.stack([left, right])
  return getattr(sk_data, name)()[None]


@functools.lru_cache(maxsize=None)
def _photograph(name):
  views = np.asarray(_load(name))
  if views.ndim != 4 or views.shape[-1] != 3 or views.dtype != np.uint8:
    raise ValueError(f"photograph {name}: expected uint8 [V, H, W, 3], got "
                     f"{views.dtype} {views.shape}")
  views.flags.writeable = False
  return views


def photographs():
  """[(name, uint8 [V, H, W, 3])] in the order of NAMES; V = 2 for the
  stereo pair (its two views), else 1."""
  return [(name, _photograph(name)) for name in NAMES]


def view_names(name):
  """The names of the views of photograph `name` (itself, or the stereo pair's)."""
  return STEREO.get(name, (name,))


def test_column(width):
  """The first column of the test region of a photograph `width` wide."""
  return width - width // TEST_FRACTION


def patches(image, size, stride):
  """All size x size patches of image [H, W, C] at `stride`, [N, size, size, C]."""
  h, w, _ = image.shape
  return np.stack([image[i:i + size, j:j + size]
                   for i in range(0, h - size + 1, stride)
                   for j in range(0, w - size + 1, stride)])


def _regions(views):
  """(training regions, test regions) of one photograph's views: the same
  columns of every view."""
  boundary = test_column(views.shape[2])
  return [v[:, :boundary] for v in views], [v[:, boundary:] for v in views]


def splits(size):
  """{'train', 'test'} -> int32 [N, size, size, 3] patches, photographs in
  the order of NAMES (views in order within a photograph)."""
  train, test = [], []
  for _, views in photographs():
    train_regions, test_regions_ = _regions(views)
    train += [patches(region, size, size // 2) for region in train_regions]
    test += [patches(region, size, size) for region in test_regions_]
  return {"train": np.concatenate(train).astype(np.int32),
          "test": np.concatenate(test).astype(np.int32)}


def test_region_names():
  """The names of the images `test_regions` returns, in its order: one per
  view (the stereo pair gives motorcycle_left and motorcycle_right)."""
  return [view for name in NAMES for view in view_names(name)]


def test_regions():
  """[uint8 [H, W, 3]]: the whole test region of every view of every
  photograph, in the order of `test_region_names`."""
  return [np.ascontiguousarray(region) for _, views in photographs()
          for region in _regions(views)[1]]


def unseen_photograph():
  """("grace_hopper", uint8 [600, 512, 3]): matplotlib's sample photograph,
  in no split of this dataset."""
  from matplotlib import cbook  # pylint: disable=g-import-not-at-top
  from PIL import Image  # pylint: disable=g-import-not-at-top
  path = cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)
  with Image.open(path) as image:
    return "grace_hopper", np.asarray(image.convert("RGB"), dtype=np.uint8)
