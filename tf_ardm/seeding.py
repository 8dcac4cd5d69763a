"""The one way the package seeds Python, NumPy, TensorFlow and Keras."""
import random
import sys

import tensorflow as tf


class _Random(random.Random):
  """random.Random whose randint also takes integral floats, as before Python 3.12.

  Keras asks its seed generator for randint(1, 1e9); Python 3.12 refuses
  the float (tf-keras 2.17, keras-team/tf-keras issue #803), so every
  initializer without its own seed failed after tf.keras.utils.set_random_seed.
  """

  def randint(self, a, b):
    return super().randint(int(a), int(b))


def set_random_seed(seed):
  """tf.keras.utils.set_random_seed(seed), with Keras' generator made usable on Python 3.12.

  The same seeds on every stack: the generator is random.Random(seed) as
  Keras makes it, only with integer bounds.
  """
  tf.keras.utils.set_random_seed(seed)
  backend = sys.modules[tf.keras.utils.set_random_seed.__module__].backend
  backend._SEED_GENERATOR.generator = _Random(seed)  # pylint: disable=protected-access
