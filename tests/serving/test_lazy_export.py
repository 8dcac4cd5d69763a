"""LazyExport runs a SavedModel's functions like tf.saved_model.load's, to the
bit; the codec falls back to tf.saved_model.load where it can't; the codec
commands import no model-building code."""
import logging
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from tf_ardm.coding import coder as coder_lib
from tf_ardm.coding import variants
from tf_ardm.data import datasets
from tf_ardm.errors import UserError
from tf_ardm.serving import lazy_export

from conftest import REPO  # pylint: disable=g-bad-import-order

DIGITS = os.path.join(REPO, "savedmodels", "digits", "codec")


class _Small(tf.Module):
  """A variable, a captured constant and a Case over two branches."""

  def __init__(self):
    super().__init__()
    self.scale = tf.Variable(3, name="scale")
    self.offset = tf.constant([10, 20])

  @tf.function(input_signature=[tf.TensorSpec([2], tf.int32), tf.TensorSpec([], tf.int32)])
  def f(self, x, branch):
    y = tf.switch_case(branch, [lambda: x * self.scale, lambda: x + self.offset])
    return {"y": y, "sum": tf.reduce_sum(y)}


class _WithTable(tf.Module):

  def __init__(self):
    super().__init__()
    self.table = tf.lookup.StaticHashTable(
        tf.lookup.KeyValueTensorInitializer(tf.constant([1, 2]), tf.constant([5, 6])), -1)

  @tf.function(input_signature=[tf.TensorSpec([None], tf.int32)])
  def g(self, x):
    return self.table.lookup(x)


@pytest.fixture(scope="module")
def small(tmp_path_factory):
  path = str(tmp_path_factory.mktemp("small"))
  tf.saved_model.save(_Small(), path)
  return path


def test_functions_match_saved_model_load_and_share_variables(small):
  lazy, full = lazy_export.LazyExport(small), tf.saved_model.load(small)
  x = np.array([1, 2], np.int32)
  for branch in (0, 1):
    got, want = lazy.f(x, branch), full.f(x, branch)
    assert set(got) == {"y", "sum"}
    np.testing.assert_array_equal(got["y"], want["y"])
    np.testing.assert_array_equal(lazy.function("f", case_branch=branch)(x, 0)["y"], want["y"])
  lazy.scale.assign(5)  # The functions read the export's variable.
  np.testing.assert_array_equal(lazy.f(x, 0)["y"], [5, 10])
  np.testing.assert_array_equal(lazy.function("f", case_branch=0)(x, 1)["y"], [5, 10])
  assert hasattr(lazy, "f") and hasattr(lazy, "scale") and not hasattr(lazy, "nothing")
  with pytest.raises(ValueError, match="no Case op with a branch 2"):
    lazy.function("f", case_branch=2)
  with pytest.raises(TypeError, match="takes 2 inputs"):
    lazy.f(x)


def test_two_loads_in_one_process_keep_their_functions_apart(small, tmp_path):
  other = _Small()
  other.scale.assign(7)
  tf.saved_model.save(other, str(tmp_path))
  first, second = lazy_export.LazyExport(small), lazy_export.LazyExport(str(tmp_path))
  x = np.array([1, 1], np.int32)
  assert first.f(x, 0)["sum"].numpy() == 6 and second.f(x, 0)["sum"].numpy() == 14


def test_unsupported_captures_are_refused(tmp_path):
  tf.saved_model.save(_WithTable(), str(tmp_path))
  lazy = lazy_export.LazyExport(str(tmp_path))
  assert "captures a" in lazy.unsupported(["g"])
  assert lazy.unsupported(["missing"]) == "missing is not a function with one trace"
  with pytest.raises(ValueError, match="cannot load g"):
    lazy.g([1])


@pytest.mark.slow  # About a minute: tf.saved_model.load and eight first calls.
def test_shipped_digits_codec_is_lazy_and_codes_as_saved_model_load():
  """Every network variant the Coder pins gives the bytes that the whole
  export (tf.saved_model.load, its switch unpinned) gives."""
  module, config = coder_lib.open_export(DIGITS)
  assert isinstance(module, lazy_export.LazyExport)
  full = tf.saved_model.load(DIGITS)
  x = datasets.split(config, "test", limit=3)
  info = module.codec_info()
  assert info["fingerprint"].numpy() == full.codec_info()["fingerprint"].numpy()
  for use_xla, direct_conv in [(False, True), (False, False)]:
    for m in (module, full):
      m.use_xla.assign(use_xla)
      m.direct_conv.assign(direct_conv)
    variant = variants.index(int(use_xla), int(direct_conv))
    encode = module.function("encode", case_branch=variant)
    for solid, lean in [(False, True), (True, False)]:
      got = encode(x, 8, solid, lean).numpy()
      assert list(got) == list(full.encode(x, 8, solid, lean).numpy())
      decoded = module.function("decode", case_branch=variant)(got, solid, lean)
      np.testing.assert_array_equal(decoded, x)
    np.testing.assert_array_equal(module.function("code_length", case_branch=variant)(x, 8),
                                  full.code_length(x, 8))
  np.testing.assert_array_equal(module.log_prob(x, 4)["bits_per_dim"],
                                full.log_prob(x, 4)["bits_per_dim"])


@pytest.mark.slow  # About 30 s: tf.saved_model.load.
def test_coder_falls_back_to_saved_model_load(monkeypatch, caplog):
  monkeypatch.setattr(lazy_export.LazyExport, "unsupported", lambda self, names: "a reason")
  with caplog.at_level(logging.INFO, logger="absl"):  # What -v shows.
    coder = coder_lib.load(DIGITS)
  assert "with tf.saved_model.load, not lazily (a reason)" in caplog.text
  assert not isinstance(coder.module, lazy_export.LazyExport)
  x = datasets.split(coder.config, "test", limit=1)
  monkeypatch.undo()
  lazy = coder_lib.load(DIGITS)
  assert isinstance(lazy.module, lazy_export.LazyExport)
  assert coder.compress_each(x, 8, lean=True) == lazy.compress_each(x, 8, lean=True)


def test_a_corrupt_export_gives_the_one_line_error(tmp_path):
  (tmp_path / "saved_model.pb").write_bytes(b"not a SavedModel")
  with pytest.raises(UserError, match="cannot load the SavedModel"):
    coder_lib.load(str(tmp_path))


def test_codec_commands_import_no_model_code():
  """Nor TFP, except where the range coder's ops package imports it: under
  TF 2.14 the ops come with tensorflow_compression, which does."""
  heavy = ["tensorflow_probability", "sklearn", "matplotlib", "tensorflow_datasets",
           "tf_ardm.models", "tf_ardm.serving.servable", "tf_ardm.coding.codec"]
  code = ("import sys; import tf_ardm.cli.compress, tf_ardm.cli.decompress; "
          "from tf_ardm.coding import range_coder; "
          "tfp = range_coder.OPS_PACKAGE == 'tensorflow_compression'; "
          f"print([m for m in {heavy!r} if m in sys.modules and not "
          "(tfp and m == 'tensorflow_probability')])")
  out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                       env=dict(os.environ, PYTHONPATH=REPO), check=True).stdout
  assert out.strip().splitlines()[-1] == "[]"
