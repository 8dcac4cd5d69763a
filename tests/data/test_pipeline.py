"""tf.data pipelines: text crops, image augmentation, resuming at a step."""
# pylint: disable=protected-access
import numpy as np
import pytest

from tf_ardm.data import datasets
from tf_ardm.data import pipeline


def _take(ds, n):
  return np.stack(list(ds.take(n).as_numpy_iterator()))


def _stream_chunks(num_chunks, seq_len):
  """Chunks [N, seq_len, 1] of the stream 0, 1, 2, ...: a crop shows where it came from."""
  return np.arange(num_chunks * seq_len, dtype=np.int64).reshape(num_chunks, seq_len, 1)


def test_text_crops_are_windows_of_4_seq_len_blocks_each_block_once_per_pass():
  seq_len = 5
  chunks = _stream_chunks(43, seq_len)  # 215 tokens: 10 blocks of 20, 15 left over.
  crops = _take(pipeline._text_crops(chunks, seed=3), 30)
  assert crops.shape == (30, seq_len, 1) and crops.dtype == np.int64
  starts = crops[:, 0, 0]
  np.testing.assert_array_equal(crops[..., 0], starts[:, None] + np.arange(seq_len))
  blocks, offsets = starts // 20, starts % 20
  assert offsets.min() >= 0 and offsets.max() <= 3 * seq_len  # Inside their block.
  assert len(set(offsets)) > 5  # Offsets vary.
  assert blocks.max() < 10  # The leftover tokens 200..214 are never used.
  for p in range(3):  # Each pass is a permutation of the 10 blocks...
    assert sorted(blocks[10 * p:10 * p + 10]) == list(range(10))
  assert list(blocks[:10]) != list(blocks[10:20])  # ...reshuffled every pass.


def test_text_crops_are_a_function_of_the_seed():
  chunks = _stream_chunks(40, 5)
  crops = lambda seed: _take(pipeline._text_crops(chunks, seed), 25)
  np.testing.assert_array_equal(crops(3), crops(3))
  assert not np.array_equal(crops(3), crops(4))


def test_padded_text_crops_keep_a_prefix_and_pad_the_rest():
  seq_len, pad = 16, -1
  chunks = _stream_chunks(100, seq_len)
  crops = _take(pipeline._text_crops(chunks, 5, pad=pad, pad_fraction=0.25), 800)[..., 0]
  plain = _take(pipeline._text_crops(chunks, 5), 800)[..., 0]
  lengths = (crops != pad).sum(1)
  # A prefix of the same crop, then only padding.
  np.testing.assert_array_equal(np.where(crops != pad, crops, plain), plain)
  assert ((crops == pad) == (np.arange(seq_len) >= lengths[:, None])).all()
  short = lengths < seq_len
  assert 0.2 < short.mean() < 0.3  # pad_fraction of the crops.
  assert lengths[short].min() >= 1 and set(lengths[short]) == set(range(1, seq_len))
  # The same crops on resume: a function of the seed and the index.
  again = _take(pipeline._text_crops(chunks, 5, skip=300, pad=pad, pad_fraction=0.25), 10)
  np.testing.assert_array_equal(again[..., 0], crops[300:310])


def test_byte_training_batches_hold_bytes_and_padded_tails():
  data = datasets.load("text_bytes", seq_len=64)
  batches = _take(pipeline.train_dataset(data, batch_size=32, seed=0), 8)[..., 0]
  assert batches.shape == (8, 32, 64) and batches.min() >= 0 and batches.max() == data.pad
  rows = batches.reshape(-1, 64)
  padded = rows[:, -1] == data.pad
  assert 0.1 < padded.mean() < 0.4
  for row in rows[padded]:  # The padding is the row's tail.
    assert (row[np.argmax(row == data.pad):] == data.pad).all()


def test_text_training_batches():
  data = datasets.load("text", seq_len=32)
  batches = _take(pipeline.train_dataset(data, batch_size=8, seed=1), 5)
  assert batches.shape == (5, 8, 32, 1) and batches.dtype == np.int32
  # Values are letters and spaces, ids 1..27 of the K = 28 classes.
  assert batches.min() >= 1 and batches.max() <= 27
  again = _take(pipeline.train_dataset(data, batch_size=8, seed=1), 5)
  np.testing.assert_array_equal(batches, again)


def _dihedral(image):
  """The 8 images of the symmetries of the square: rotations, with and without a flip."""
  return [np.rot90(flipped, k) for flipped in (image, image[:, ::-1]) for k in range(4)]


def _one_image_data(image):
  return datasets.Dataset("one", "image", 16, {"train": image[None], "test": image[None]})


def test_augment_gives_exactly_the_8_dihedral_variants():
  image = np.arange(16, dtype=np.int32).reshape(4, 4, 1)  # No symmetry of its own.
  variants = {v.tobytes() for v in _dihedral(image)}
  assert len(variants) == 8
  batches = _take(pipeline.train_dataset(_one_image_data(image), 1, seed=5, augment=True), 400)
  seen = [b[0].tobytes() for b in batches]
  assert set(seen) == variants  # All 8 (each has probability 1/8), nothing else.
  counts = np.array([seen.count(v) for v in variants])
  assert counts.min() > 20  # About 50 each.
  plain = _take(pipeline.train_dataset(_one_image_data(image), 1, seed=5), 20)
  assert {b[0].tobytes() for b in plain} == {image.tobytes()}


def test_augment_is_a_function_of_the_seed():
  data = datasets.load("digits")
  batches = lambda seed: _take(pipeline.train_dataset(data, 16, seed, augment=True), 4)
  np.testing.assert_array_equal(batches(2), batches(2))
  assert not np.array_equal(batches(2), batches(3))


@pytest.mark.parametrize("name,augment", [("digits", False), ("digits", True),
                                          ("text", False)])
def test_start_step_continues_the_batches_of_an_uninterrupted_run(name, augment):
  data = datasets.load(name, seq_len=32)
  # 1437 digits: the skipped 7 * 200 examples end mid-pass of the shuffle.
  full = _take(pipeline.train_dataset(data, 200, seed=4, augment=augment), 12)
  resumed = _take(pipeline.train_dataset(data, 200, seed=4, augment=augment,
                                         start_step=7), 5)
  np.testing.assert_array_equal(resumed, full[7:])
