"""Datasets: embedded data, splits, tokenisation and clear errors."""
import numpy as np
import pytest

from tf_ardm.data import byte_text
from tf_ardm.data import datasets
from tf_ardm.data import photos
from tf_ardm.data import text
from tf_ardm.data import tiles
from tf_ardm.data import validation
from tf_ardm.errors import UserError


def test_digits_split():
  data = datasets.load("digits")
  assert data.shape == (8, 8, 1) and data.num_classes == 17
  assert len(data.splits["train"]) == 1437 and len(data.splits["test"]) == 360
  for x in data.splits.values():
    assert x.dtype == np.int32 and x.min() >= 0 and x.max() <= 16


def test_text8_tokenisation():
  """Spec §11.19."""
  np.testing.assert_array_equal(text.encode("a z"), [2, 1, 27])
  assert text.normalize("Hello,  World!\n2x") == "hello world x"
  assert text.decode([2, 1, 27, 28]) == "a z_"


def test_text8_alphabet_in_bytes():
  assert text.ALPHABET == " abcdefghijklmnopqrstuvwxyz"
  np.testing.assert_array_equal(text.encode(b"za "), [27, 2, 1])
  assert text.encode("").shape == (0,)
  assert text.to_ascii(np.array([[0, 1], [2, 27]])) == b"? az"
  assert text.to_ascii([28, 29, -1]) == b"__?"
  for bad, message in [("abC", "b'C' at offset 2"), (b"a\nb", r"b'\\n' at offset 1"),
                       (b"\xe9", r"b'\\xe9' at offset 0")]:
    with pytest.raises(ValueError, match=message + r" is outside the text8 alphabet"):
      text.encode(bad)


def test_text_bytes_split_by_document_and_fixed():
  docs = byte_text.documents()
  names = sorted(docs)
  assert any(n.startswith("topics/") for n in names)
  assert "stdlib/json/decoder.py" in names and "stdlib/os.py" in names
  assert not any("/test/" in n or "idlelib" in n or "site-packages" in n for n in names)
  assert all(byte_text.SEPARATOR not in d and d for d in docs.values())
  # The split of a document is a fixed function of its name.
  splits = {n: byte_text.split_of(n) for n in names}
  assert splits["stdlib/os.py"] == byte_text.split_of("stdlib/os.py")
  count = {s: sum(v == s for v in splits.values()) for s in ("train", "valid", "test")}
  assert count["test"] > 0.03 * len(names) and count["valid"] > 0.03 * len(names)
  assert count["train"] > 0.85 * len(names)
  # Pinned: the hash buckets must never move (a moved document would leak
  # test text into training for models trained before).
  assert [byte_text.split_of(f"doc{i}") for i in range(8)] == _PINNED_SPLITS
  # Each split is its documents, in name order, joined by NUL; no test
  # document's text is in the training bytes.
  joined = byte_text.split_bytes(docs)
  test_names = [n for n in names if splits[n] == "test"]
  assert joined["test"] == b"\0".join(docs[n] for n in test_names)
  long_test = max(test_names, key=lambda n: len(docs[n]))
  assert docs[long_test][:200] not in joined["train"]


_PINNED_SPLITS = ["train", "train", "valid", "test", "train", "train", "train", "train"]


def test_text_bytes_text_that_moved_between_pythons_is_held_out_nowhere():
  # zipfile: a module in Python 3.11, a package in 3.12. Its 3.11 name hashes
  # to test, its 3.12 names to train and valid, so it is training text on
  # both: a model trained on either Python has seen no held-out text of the
  # other.
  names = ["stdlib/zipfile.py", "stdlib/zipfile/__init__.py", "stdlib/zipfile/_path/__init__.py"]
  assert [byte_text._hashed_split(n) for n in names] == ["test", "train", "valid"]
  assert [byte_text.split_of(n) for n in names] == ["train"] * 3
  for name, group in byte_text.GROUP_OF.items():
    assert name in group and all(byte_text.GROUP_OF[other] == group for other in group)
  # Every other name keeps the split its name hashes to.
  moved = set(byte_text.GROUP_OF)
  assert all(byte_text.split_of(n) == byte_text._hashed_split(n)
             for n in byte_text.documents() if n not in moved)


def test_text_bytes_dataset_shapes_and_round_trip():
  data = datasets.load("text_bytes", seq_len=256)
  assert data.kind == "text" and data.num_classes == 257 and data.shape == (256, 1)
  assert data.pad == byte_text.PAD == 256 and 0 < data.pad_fraction < 1
  for x in data.splits.values():
    assert x.dtype == np.int32 and x.min() >= 0 and x.max() <= 255 and len(x) > 10
  train = byte_text.split_bytes()["train"]
  assert byte_text.to_bytes(data.splits["train"][:3]) == train[:3 * 256]
  assert byte_text.to_bytes([[-1, 0], [255, 256]]) == bytes([0, 255])  # PAD dropped.
  chunks = byte_text.pad_chunks(b"abc", 2)
  np.testing.assert_array_equal(chunks[..., 0], [[97, 98], [99, byte_text.PAD]])
  assert byte_text.pad_chunks(b"", 4).shape == (0, 4, 1)
  assert byte_text.to_bytes(byte_text.pad_chunks(bytes(range(256)), 100)) == bytes(range(256))
  assert "train" in byte_text.corpus_summary() and "Python 3." in byte_text.corpus_summary()


def test_mosaic_layout_fill_and_gap():
  x = (np.arange(1, 6)[:, None, None, None] * np.ones((5, 2, 3, 1))).astype(np.uint8)
  expected = np.array([[1, 2, 3], [4, 5, 0]])
  mosaic = tiles.mosaic(x)  # 5 images -> 3 columns, 2 rows.
  assert mosaic.shape == (4, 9, 1) and mosaic.dtype == np.uint8
  np.testing.assert_array_equal(mosaic[..., 0], np.kron(expected, np.ones((2, 3), int)))
  framed = tiles.mosaic(x, cols=2, fill=9, gap=1)  # 3 rows of 2, a 1-pixel frame.
  assert framed.shape == (3 * 3 + 1, 2 * 4 + 1, 1)
  cells = np.array([[1, 2], [3, 4], [5, 9]])
  np.testing.assert_array_equal(framed[1::3, 1::4, 0], cells)
  np.testing.assert_array_equal(framed[2::3, 3::4, 0], cells)
  assert (framed[::3] == 9).all() and (framed[:, ::4] == 9).all()  # The frame.


def test_patches_pad_edges_and_invert():
  image = np.arange(5 * 7 * 2).reshape(5, 7, 2)
  patches = tiles.patches(image, (2, 3))
  assert patches.shape == (3 * 3, 2, 3, 2)
  np.testing.assert_array_equal(patches[1], image[0:2, 3:6])
  np.testing.assert_array_equal(patches[8][0], np.repeat(image[4:5, 6], 3, 0))  # Corner.
  np.testing.assert_array_equal(patches[8][1], patches[8][0])  # The last row, repeated.
  np.testing.assert_array_equal(tiles.from_patches(patches, image.shape), image)
  np.testing.assert_array_equal(tiles.from_patches(patches, (5, 7)), image)


def test_validation_messages():
  x = np.array([[[0], [3]]])
  np.testing.assert_array_equal(validation.check_values(x, 4), x)
  assert validation.check_values(x, 4).dtype == np.int64
  assert validation.check_datapoints(x.astype(bool), (2, 1), 2).dtype == np.int32
  assert validation.check_datapoints(np.zeros([0, 2, 1], np.uint8), (2, 1), 2).shape == (0, 2, 1)
  for bad, message in [
      (x, r"^f.npy: values must lie in \[0, 3\), got \[0, 3\]$"),
      (x - 1, r"^f.npy: values must lie in \[0, 3\), got \[-1, 2\]$"),
      (x * 0.5, "^f.npy: expected integers, got dtype float64$"),
      (x[0], r"^f.npy: expected datapoints of shape \[N, 2, 1\], got \[2, 1\]$"),
      (x[:, :1], r"^f.npy: expected datapoints of shape \[N, 2, 1\], got \[1, 1, 1\]$")]:
    with pytest.raises(UserError, match=message):
      validation.check_datapoints(bad, (2, 1), 3, "f.npy")


def test_embedded_text_splits_by_offset():
  data = datasets.load("text", seq_len=100)
  sizes = {k: v.size for k, v in data.splits.items()}
  total = sum(sizes.values())
  assert abs(sizes["train"] / total - 0.9) < 0.01
  assert data.shape == (100, 1) and data.num_classes == 28
  assert data.splits["train"].min() >= 1 and data.splits["train"].max() <= 27


def test_missing_files_give_clear_errors(tmp_path):
  with pytest.raises(UserError, match="text8.zip"):
    datasets.load("text8", str(tmp_path))
  with pytest.raises(UserError, match="tfds build cifar10"):
    datasets.load("cifar10", str(tmp_path))
  with pytest.raises(UserError, match="does not exist"):
    datasets.load("cifar10", str(tmp_path / "c.npz"))
  with pytest.raises(UserError, match="unknown dataset"):
    datasets.load("mnist")


def test_text8_and_cifar_npz_load_from_disk(tmp_path):
  (tmp_path / "text8").write_text(" the quick brown fox" * 200)
  data = datasets.load("text8", str(tmp_path), seq_len=50)
  assert data.kind == "text" and data.splits["test"].shape[1:] == (50, 1)
  path = tmp_path / "c.npz"
  np.savez(path, x_train=np.zeros([4, 32, 32, 3], np.uint8),
           x_test=np.ones([2, 32, 32, 3], np.uint8))
  data = datasets.load("cifar10", str(path))
  assert data.splits["test"].shape == (2, 32, 32, 3) and data.num_classes == 256
  bad = tmp_path / "bad.npz"
  np.savez(bad, x_train=np.zeros([4, 8, 8, 1], np.uint8), x_test=np.zeros([1, 8, 8, 1]))
  with pytest.raises(UserError, match="expected"):
    datasets.load("cifar10", str(bad))


def _expected_test_patches(size):
  return sum(v.shape[0] * (v.shape[1] // size) * (v.shape[2] // photos.TEST_FRACTION // size)
             for _, v in photos.photographs())


@pytest.mark.parametrize("size", [16, 32])
def test_photos_patches(size):
  data = datasets.load("photos", patch_size=size)
  assert data.shape == (size, size, 3) and data.num_classes == 256 and data.kind == "image"
  for x in data.splits.values():
    assert x.dtype == np.int32 and x.min() >= 0 and x.max() <= 255
  # Test: the rightmost fifth of each view tiled without overlap.
  assert len(data.splits["test"]) == _expected_test_patches(size)
  assert len(data.splits["test"]) == {16: 3975, 32: 940}[size]
  assert len(data.splits["train"]) > 10 * len(data.splits["test"])


def test_photos_corpus():
  """scikit-learn's two photographs first (so the first patches are those of
  the old two-photograph corpus), then scikit-image's bundled colour ones."""
  shapes = {name: views.shape for name, views in photos.photographs()}
  assert list(shapes) == list(photos.NAMES)
  assert shapes["china"] == shapes["flower"] == (1, 427, 640, 3)
  assert shapes["motorcycle"] == (2, 500, 741, 3)
  assert shapes["astronaut"] == (1, 512, 512, 3)
  assert len(shapes) == 10
  for _, views in photos.photographs():
    assert views.dtype == np.uint8 and views.std() > 10  # not blank.
  china = photos.photographs()[0][1][0]
  first = photos.patches(china[:, :photos.test_column(640)], 16, 8)[:3]
  np.testing.assert_array_equal(photos.splits(16)["train"][:3], first)


def _pixel_ids(monkeypatch):
  """Makes every pixel of every view of the corpus a unique id (all three
  channels the id); returns the id images {name: [V, H, W, 3]}."""
  real = photos.photographs()
  fake, start = [], 0
  for name, views in real:
    size = views[..., 0].size
    ids = np.arange(start, start + size).reshape(views.shape[:3])
    fake.append((name, np.repeat(ids[..., None], 3, -1)))
    start += size
  monkeypatch.setattr(photos, "photographs", lambda: fake)
  return dict(fake)


@pytest.mark.parametrize("size", [16, 32])
def test_photos_test_patches_share_no_pixel_with_training_patches(monkeypatch, size):
  """Every pixel gets a unique id; train and test ids must be disjoint."""
  _pixel_ids(monkeypatch)
  split = photos.splits(size)
  train, test = set(split["train"].ravel()), split["test"][..., 0].ravel()
  assert not train & set(test)
  assert len(set(test)) == len(test)  # Test patches do not overlap either.
  # Nor do the whole test regions touch a training pixel.
  regions = np.concatenate([r[..., 0].ravel() for r in photos.test_regions()])
  assert not train & set(regions) and set(test) <= set(regions)


def test_photos_stereo_pair_holds_out_the_same_region(monkeypatch):
  ids = _pixel_ids(monkeypatch)
  names = photos.test_region_names()
  regions = dict(zip(names, photos.test_regions()))
  left, right = regions["motorcycle_left"], regions["motorcycle_right"]
  assert left.shape == right.shape == (500, 741 - photos.test_column(741), 3)
  views = ids["motorcycle"]
  boundary = photos.test_column(741)
  np.testing.assert_array_equal(left, views[0, :, boundary:])
  np.testing.assert_array_equal(right, views[1, :, boundary:])
  # The rest of both views is training data: no column right of the boundary
  # of either view is in a training patch.
  train = set(photos.splits(16)["train"].ravel())
  assert not train & set(views[:, :, boundary:].ravel())
  assert views[0, 0, 0, 0] in train and views[1, 0, 0, 0] in train  # Both views train.


def test_photos_test_regions():
  names, regions = photos.test_region_names(), photos.test_regions()
  assert len(names) == len(regions) == 11 and len(set(names)) == 11
  assert names[:2] == ["china", "flower"]
  for name, region in zip(names, regions):
    assert region.dtype == np.uint8 and region.ndim == 3 and region.shape[-1] == 3, name
  assert regions[0].shape == (427, 128, 3)
  np.testing.assert_array_equal(regions[0], photos.photographs()[0][1][0, :, 512:])
  # The test patches tile the regions: the first region's first patches.
  np.testing.assert_array_equal(photos.splits(16)["test"][:8],
                                photos.patches(regions[0][:16], 16, 16))


def test_photos_split_is_deterministic():
  for size in (16, 32):
    a, b = photos.splits(size), photos.splits(size)
    for key in ("train", "test"):
      np.testing.assert_array_equal(a[key], b[key])
  for a, b in zip(photos.test_regions(), photos.test_regions()):
    np.testing.assert_array_equal(a, b)


def test_photos_unseen_photograph_is_in_no_split():
  name, image = photos.unseen_photograph()
  assert name == "grace_hopper" and image.shape == (600, 512, 3) and image.dtype == np.uint8
  shapes = {views.shape[1:] for _, views in photos.photographs()}
  assert image.shape not in shapes


def test_photos_bad_patch_size():
  with pytest.raises(UserError, match="16 or 32"):
    datasets.load("photos", patch_size=24)
