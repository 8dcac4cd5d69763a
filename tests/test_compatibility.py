"""Every shipped export still loads and answers, and every stream written before still decodes.

tests/fixtures/v2/ holds inputs and the .ardm files (stream format 2) that
the integer codec of the shipped exports made of them (see its README.md).
They must decode with the current code to exactly the original file (PNG:
its pixels; NPY: its array and dtype; text: its bytes), and compressing the
original again at the same budget must give the same bytes: the stream and
container formats and the codec fingerprints are unchanged.
tests/fixtures/v1/ holds format-1 files (float arithmetic, commit 35361ba),
and tests/fixtures/v2_arithmetic1/ format-2 files of the retired arithmetic 1
(commit b4a784b): they must be refused with the one-line error that says how
to read them.
"""
import collections
import os

import numpy as np
from PIL import Image
import pytest
import tensorflow as tf

import forked_cli
from tf_ardm.coding import coder as coder_lib  # Its range_coder registers the codec export's ops.
from tf_ardm.data import datasets
from tf_ardm.serving import servable

from conftest import REPO  # pylint: disable=g-bad-import-order

ZOO = os.path.join(REPO, "savedmodels")
V1 = os.path.join(REPO, "tests", "fixtures", "v1")
V2 = os.path.join(REPO, "tests", "fixtures", "v2")
V2_ARITHMETIC1 = os.path.join(REPO, "tests", "fixtures", "v2_arithmetic1")
SHIPPED = sorted(name for name in os.listdir(ZOO)
                 if os.path.isdir(os.path.join(ZOO, name, "serving")))
# Decoding and loading the Upscale-4 model take a while.
SLOW_MODELS = {"photos_upscale4"}

# old: the fixture's model existed in the earlier formats, so v1/ and
# v2_arithmetic1/ hold its files too.
Fixture = collections.namedtuple("Fixture", "name model budget old")
FIXTURES = [Fixture("digit0.png", "digits", 8, True), Fixture("digits_row.png", "digits", 16, True),
            Fixture("digits3.npy", "digits", 8, True), Fixture("text.txt", "text", 16, True),
            Fixture("photos2.png", "photos_upscale4", 4, True),
            Fixture("bytes.bin", "text_bytes", 16, False)]
OLD = [f for f in FIXTURES if f.old]


def _slow_if(values, slow):
  return [pytest.param(v, marks=pytest.mark.slow) if slow(v) else v for v in values]


def test_every_fixture_is_tested():
  for folder, fixtures in ((V1, OLD), (V2, FIXTURES)):
    assert sorted(os.listdir(folder)) == sorted(
        ["README.md"] + [f.name for f in fixtures] + [f.name + ".ardm" for f in fixtures])
  assert sorted(os.listdir(V2_ARITHMETIC1)) == sorted(
      ["README.md"] + [f.name + ".ardm" for f in OLD if f.model not in SLOW_MODELS])
  assert {f.model for f in FIXTURES} == set(SHIPPED)


@pytest.mark.parametrize("name", _slow_if(SHIPPED, lambda name: name in SLOW_MODELS))
def test_shipped_export_loads_and_answers(name):
  root = os.path.join(ZOO, name)
  serving = tf.saved_model.load(os.path.join(root, "serving", "1"))
  assert "serving_default" in serving.signatures
  functions, config = servable.load(root)
  x = datasets.split(config, "test", limit=2)
  bits = serving.log_prob(x=tf.constant(x), budget=tf.constant(1))["bits_per_dim"].numpy()
  assert bits.shape == (2,) and np.all(np.isfinite(bits)) and np.all(bits > 0), bits
  np.testing.assert_array_equal(
      functions.log_prob(x=tf.constant(x), budget=tf.constant(1))["bits_per_dim"].numpy(), bits)
  raw_codec = tf.saved_model.load(os.path.join(root, "codec"))
  coder = coder_lib.load(root)
  assert coder.config == config
  assert raw_codec.codec_info()["fingerprint"].numpy() == coder.fingerprint
  assert len(coder.fingerprint) == 4
  np.testing.assert_allclose(coder.exact_bits(x, 1) / config.num_steps, bits, rtol=1e-5)


def _code_with_current_cli(fixtures, out):
  """Decodes each fixture's .ardm and compresses its original again at its budget,
  with the current command lines; returns the folder holding decoded/ and coded/."""
  os.makedirs(os.path.join(out, "decoded"))
  os.makedirs(os.path.join(out, "coded"))
  cases = []
  for f in fixtures:
    model = f"--model={os.path.join(ZOO, f.model)}"
    cases += [("decompress", [model, os.path.join(V2, f.name + ".ardm"),
                              os.path.join(out, "decoded", f.name)]),
              ("compress", [model, f"--budget={f.budget}", os.path.join(V2, f.name),
                            os.path.join(out, "coded", f.name + ".ardm")])]
  for (command, argv), (code, _, err) in zip(cases, forked_cli.run_many(cases)):
    assert code == 0, (command, argv, err[-3000:])
  return out


@pytest.fixture(scope="module")
def coded(tmp_path_factory):
  """fixture -> the folder of its decoded and re-coded files; the fast fixtures
  share one run of the command lines."""
  runs = {}
  fast = tuple(f for f in FIXTURES if f.model not in SLOW_MODELS)

  def get(fixture):
    group = fast if fixture in fast else (fixture,)
    if group not in runs:
      runs[group] = _code_with_current_cli(group, str(tmp_path_factory.mktemp("v2")))
    return runs[group]
  return get


def _assert_same_file(path, original):
  if original.endswith(".png"):
    a, b = Image.open(path), Image.open(original)
    assert a.mode == b.mode
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  elif original.endswith(".npy"):
    a, b = np.load(path), np.load(original)
    assert a.dtype == b.dtype
    np.testing.assert_array_equal(a, b)
  else:
    with open(path, "rb") as f, open(original, "rb") as g:
      assert f.read() == g.read()


@pytest.mark.parametrize("fixture", _slow_if(FIXTURES, lambda f: f.model in SLOW_MODELS),
                         ids=lambda f: f.name)
def test_v2_stream_decodes_to_the_original_and_recodes_to_the_same_bytes(fixture, coded):
  out = coded(fixture)
  _assert_same_file(os.path.join(out, "decoded", fixture.name), os.path.join(V2, fixture.name))
  with open(os.path.join(out, "coded", fixture.name + ".ardm"), "rb") as f:
    recoded = f.read()
  with open(os.path.join(V2, fixture.name + ".ardm"), "rb") as f:
    assert recoded == f.read()


@pytest.mark.parametrize("folder,says", [
    (V1, ("version-1", "73df71d")),
    (V2_ARITHMETIC1, ("retired arithmetic 1", "b4a784b"))])
def test_old_files_are_refused_with_a_way_to_read_them(tmp_path, folder, says):
  cases = [("decompress", [f"--model={os.path.join(ZOO, f.model)}",
                           os.path.join(folder, f.name + ".ardm"), str(tmp_path / f.name)])
           for f in OLD if f.model not in SLOW_MODELS]
  for (_, argv), (code, _, err) in zip(cases, forked_cli.run_many(cases)):
    lines = err.strip().splitlines()
    assert code != 0 and len(lines) == 1, (argv, err[-2000:])
    assert all(s in lines[0] for s in says), lines[0]
  assert not os.listdir(tmp_path)
