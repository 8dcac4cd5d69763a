"""seeding.set_random_seed: initializers without a seed of their own repeat."""
import numpy as np
import tensorflow as tf

from tf_ardm import seeding


def test_unseeded_initializer_repeats_after_seeding():
  # With no seed, the initializer draws one from Keras' seed generator, which
  # tf.keras.utils.set_random_seed alone leaves broken on Python 3.12 with
  # tf-keras 2.17 (keras-team/tf-keras issue #803).
  def weights(seed):
    seeding.set_random_seed(seed)
    return tf.keras.initializers.VarianceScaling()((3, 3)).numpy()
  np.testing.assert_array_equal(weights(7), weights(7))
  assert not np.array_equal(weights(7), weights(8))
