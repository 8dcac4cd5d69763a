"""`photos`: 8-bit RGB patches of the two photographs scikit-learn bundles.

china.jpg and flower.jpg (427 x 640 x 3 each) are split by region: the
rightmost fifth of each photograph's columns is the test region, the rest the
training region. Test patches tile the test region without overlap; training
patches are cut from the training region with stride patch_size // 2. No
test patch shares a pixel with a training patch.
"""
import numpy as np

TEST_FRACTION = 5  # The rightmost 1/TEST_FRACTION of the columns is test.
PATCH_SIZES = (16, 32)


def photographs():
  """The two photographs, uint8 [2, 427, 640, 3] (embedded in scikit-learn)."""
  from sklearn import datasets as sk_datasets  # pylint: disable=g-import-not-at-top
  return np.stack(sk_datasets.load_sample_images().images)


def test_column(width):
  """The first column of the test region of a photograph `width` wide."""
  return width - width // TEST_FRACTION


def patches(image, size, stride):
  """All size x size patches of image [H, W, C] at `stride`, [N, size, size, C]."""
  h, w, _ = image.shape
  return np.stack([image[i:i + size, j:j + size]
                   for i in range(0, h - size + 1, stride)
                   for j in range(0, w - size + 1, stride)])


def splits(size):
  """{'train', 'test'} -> int32 [N, size, size, 3] patches."""
  train, test = [], []
  for image in photographs():
    boundary = test_column(image.shape[1])
    train.append(patches(image[:, :boundary], size, size // 2))
    test.append(patches(image[:, boundary:], size, size))
  return {"train": np.concatenate(train).astype(np.int32),
          "test": np.concatenate(test).astype(np.int32)}
