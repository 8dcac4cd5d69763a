"""checkpoints.restore at another tile size: a U-Net image model's weights
carry over unchanged and its time input stays the known fraction."""
import numpy as np
import pytest
import tensorflow as tf

from conftest import tiny_config
from tf_ardm import models
from tf_ardm import seeding
from tf_ardm.errors import UserError
from tf_ardm.models import checkpoints


def _unet(model):
  network = model.ema_network
  return getattr(network, "network", network)  # Inside a LogisticMixture, if any.


def test_a_unet_model_is_rebuilt_at_another_tile_size(tmp_path):
  seeding.set_random_seed(0)
  model = models.build(tiny_config(shape=(4, 4, 3)))
  for v in model.ema_network.trainable_variables:  # Not the zero-initialised start.
    v.assign(tf.random.stateless_normal(v.shape, [0, 1], stddev=0.3))
  checkpoints.save(model, str(tmp_path))
  big = checkpoints.restore(str(tmp_path), shape=[8, 12, 3])
  assert big.config.shape == [8, 12, 3] and big.config.num_steps == 288
  assert len(model.ema_network.weights) == len(big.ema_network.weights)
  for a, b in zip(model.ema_network.weights, big.ema_network.weights):
    np.testing.assert_array_equal(a.numpy(), b.numpy())
  # The time input is the fraction known: t of 48 there is 6 t of 288 here.
  t = tf.constant([0, 12, 47])
  np.testing.assert_allclose(_unet(big).time(6 * t).numpy(), _unet(model).time(t).numpy(),
                             rtol=1e-5, atol=1e-6)
  # The bigger model scores a bigger tile.
  x = tf.zeros([2, 8, 12, 3], tf.int32)
  known = tf.zeros([2, 288], tf.int32)
  logp = big.ema.known_log_prob(x, known, tf.zeros([2], tf.int32)).numpy()
  assert logp.shape == (2, 288) and np.all(np.isfinite(logp))
  # The same shape restores as before, loss tracker included.
  same = checkpoints.restore(str(tmp_path), shape=[4, 4, 3])
  assert same.config == model.config


def test_only_unet_image_models_change_shape(tmp_path):
  model = models.build(tiny_config("text", shape=(8, 1), num_classes=5))
  checkpoints.save(model, str(tmp_path / "text"))
  with pytest.raises(UserError, match="only U-Net image models change H and W"):
    checkpoints.restore(str(tmp_path / "text"), shape=[16, 1])
  image = models.build(tiny_config(shape=(4, 4, 3)))
  checkpoints.save(image, str(tmp_path / "image"))
  with pytest.raises(UserError, match="only U-Net image models change H and W"):
    checkpoints.restore(str(tmp_path / "image"), shape=[8, 8, 1])
