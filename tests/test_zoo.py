"""The shipped models give the figures that the zoo table of savedmodels/README.md states.

The README is the only place the figures live: `zoo_table` parses its table
(each model row's "test ELBO" / "test negative ELBO" cell, "a ± b", and its
"exact NLL" cell, a number or "not measured"), and the tests measure them
the way the README says they were made, `python -m tf_ardm.evaluate
--model=savedmodels/<m>` with the command's defaults (passes, seed, batch
size), so each figure must reproduce to its last printed digit.
"""
import functools
import os
import re
import subprocess
import sys

import numpy as np
from PIL import Image
import pytest

from tf_ardm.cli import flags as cli_flags
from tf_ardm.data import datasets
from tf_ardm.errors import UserError
from tf_ardm.evaluation import likelihoods
from tf_ardm.serving import servable

from conftest import REPO  # pylint: disable=g-bad-import-order

ZOO = os.path.join(REPO, "savedmodels")
README = os.path.join(ZOO, "README.md")
# The README prints figures with 3 decimals: a measurement must agree to one unit in the last.
TOLERANCE = 1e-3
_NUMBER = r"(\d+\.\d+)"


def _cells(line):
  return [cell.strip() for cell in line.strip().strip("|").split("|")]


def zoo_table(path=README):
  """{model: (negative ELBO, its standard error, exact NLL or None)}, bits/dim
  (bits/char for text), from the zoo table of the README at `path`.

  ValueError when the table, its columns or a row's figures are missing or malformed.
  """
  with open(path, encoding="utf-8") as f:
    lines = [line for line in f if line.lstrip().startswith("|")]
  headers = [i for i, line in enumerate(lines) if _cells(line)[0] == "model"]
  if not headers:
    raise ValueError(f"{path}: no table with a 'model' column")
  header = _cells(lines[headers[0]])
  elbo_col = [i for i, h in enumerate(header) if re.fullmatch(r"test (negative )?ELBO", h)]
  nll_col = [i for i, h in enumerate(header) if h.startswith("exact NLL")]
  if len(elbo_col) != 1 or len(nll_col) != 1:
    raise ValueError(f"{path}: expected one 'test (negative) ELBO' and one 'exact NLL' "
                     f"column, got {header}")
  table = {}
  for line in lines[headers[0] + 2:]:
    cells = _cells(line)
    if len(cells) != len(header):
      break
    name = cells[0].strip("`")
    elbo = re.match(rf"{_NUMBER} ± {_NUMBER} bits/", cells[elbo_col[0]])
    nll = re.match(rf"{_NUMBER} bits/", cells[nll_col[0]])
    if not elbo or not (nll or cells[nll_col[0]].startswith("not measured")):
      raise ValueError(f"{path}: row {name}: cannot read {cells[elbo_col[0]]!r} "
                       f"or {cells[nll_col[0]]!r}")
    table[name] = (float(elbo[1]), float(elbo[2]), float(nll[1]) if nll else None)
  return table


STATED = zoo_table()


def test_zoo_table_states_every_shipped_model():
  shipped = {name for name in os.listdir(ZOO) if os.path.isdir(os.path.join(ZOO, name, "serving"))}
  assert shipped and set(STATED) == shipped, (sorted(STATED), sorted(shipped))


def test_zoo_table_parser_reads_both_column_names(tmp_path):
  rows = ["| model | test {} | exact NLL, fixed order |", "|---|---|---|",
          "| `a` | 1.250 ± 0.010 bits/dim | 1.300 bits/dim |",
          "| `b` | 2.500 ± 0.020 bits/char | not measured (too slow) |"]
  for column in ["ELBO", "negative ELBO"]:
    (tmp_path / "README.md").write_text("\n".join(rows).format(column), encoding="utf-8")
    assert zoo_table(tmp_path / "README.md") == {"a": (1.25, 0.01, 1.3), "b": (2.5, 0.02, None)}
  rows[2] = "| `a` | 1.250 bits/dim | 1.300 bits/dim |"
  (tmp_path / "README.md").write_text("\n".join(rows).format("ELBO"), encoding="utf-8")
  with pytest.raises(ValueError, match="row a"):
    zoo_table(tmp_path / "README.md")


@functools.lru_cache(maxsize=None)
def _shipped(name):
  """(servable functions, ModelConfig, test split int32 [N, *shape]) of a shipped model."""
  scorer, config = servable.load(os.path.join(ZOO, name))
  return scorer, config, datasets.split(config, "test")


def _evaluate_default(name):
  return cli_flags.FLAGS[name].default


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(STATED))
def test_shipped_model_negative_elbo_matches_readme(name):
  elbo, se, _ = STATED[name]
  scorer, config, x = _shipped(name)
  policy = likelihoods.every_stage(config, np.arange(config.num_steps))
  measured, measured_se = likelihoods.negative_elbo(
      scorer, x, policy, passes=_evaluate_default("passes"),
      batch_size=_evaluate_default("eval_batch_size"), seed=_evaluate_default("seed"))
  assert abs(measured - elbo) <= TOLERANCE and abs(measured_se - se) <= TOLERANCE, (
      f"savedmodels/README.md states {elbo:.3f} ± {se:.3f} for {name}; "
      f"`python -m tf_ardm.evaluate --model=savedmodels/{name}` measures "
      f"{measured:.4f} ± {measured_se:.4f}")


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(n for n, (_, _, nll) in STATED.items() if nll is not None))
def test_shipped_model_exact_nll_matches_readme(name):
  nll = STATED[name][2]
  scorer, config, x = _shipped(name)
  measured = likelihoods.exact_nll(scorer, x, config.num_steps,
                                   batch_size=_evaluate_default("eval_batch_size"))
  assert abs(measured - nll) <= TOLERANCE, (
      f"savedmodels/README.md states an exact NLL of {nll:.3f} for {name}; measured {measured:.4f}")


def test_missing_or_corrupt_shipped_model_gives_clear_error(tmp_path):
  with pytest.raises(UserError, match="not a SavedModel export"):
    servable.load(str(tmp_path / "digits"))
  broken = tmp_path / "serving" / "1"
  broken.mkdir(parents=True)
  (broken / "saved_model.pb").write_bytes(b"\x00garbage")
  with pytest.raises(UserError, match="cannot load the SavedModel"):
    servable.load(str(tmp_path))


def _cli(module, *args):
  out = subprocess.run([sys.executable, "-m", f"tf_ardm.{module}", *args], cwd=REPO,
                       capture_output=True, text=True, timeout=300)
  assert out.returncode == 0, out.stderr[-3000:]


@pytest.mark.slow
def test_shipped_codec_round_trips_a_digit_png_and_samples_a_grid(tmp_path):
  digit = datasets.load("digits").splits["test"][0, ..., 0].astype(np.uint8)
  Image.fromarray(digit, "L").save(tmp_path / "digit.png")
  model = f"--model={os.path.join(ZOO, 'digits')}"
  _cli("compress", model, "--budget=16", "-v", str(tmp_path / "digit.png"),
       str(tmp_path / "digit.ardm"))
  _cli("decompress", model, str(tmp_path / "digit.ardm"), str(tmp_path / "back.png"))
  _cli("sample", model, "--budget=16", "--num=16", f"--out={tmp_path / 'grid.png'}")
  np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "back.png")), digit)
  assert (tmp_path / "grid.png").is_file()
