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


def _read_table(lines, start, path):
  """{model: (ELBO, its standard error, exact NLL or None)} of the table whose
  header row is lines[start]."""
  header = _cells(lines[start])
  elbo_col = [i for i, h in enumerate(header) if re.fullmatch(r"test (negative )?ELBO", h)]
  nll_col = [i for i, h in enumerate(header) if h.startswith("exact NLL")]
  if len(elbo_col) != 1 or len(nll_col) != 1:
    raise ValueError(f"{path}: expected one 'test (negative) ELBO' and one 'exact NLL' "
                     f"column, got {header}")
  table = {}
  for line in lines[start + 2:]:
    cells = _cells(line)
    if not line.lstrip().startswith("|") or len(cells) != len(header):
      break
    name = cells[0].strip("`")
    elbo = re.match(rf"{_NUMBER} ± {_NUMBER} bits/", cells[elbo_col[0]])
    nll = re.match(rf"{_NUMBER} bits/", cells[nll_col[0]])
    if not elbo or not (nll or cells[nll_col[0]].startswith("not measured")):
      raise ValueError(f"{path}: row {name}: cannot read {cells[elbo_col[0]]!r} "
                       f"or {cells[nll_col[0]]!r}")
    table[name] = (float(elbo[1]), float(elbo[2]), float(nll[1]) if nll else None)
  return table


def zoo_tables(path=README):
  """[(Python version or None, table)] of the README at `path`, in order; a
  table is {model: (negative ELBO, its standard error, exact NLL or None)},
  bits/dim (bits/char or bits/byte for text), and its version is the "Python
  X.Y" that the last heading above it names (None when it names none).

  ValueError when there is no table, or a table's columns or a row's figures
  are missing or malformed.
  """
  with open(path, encoding="utf-8") as f:
    lines = f.read().splitlines()
  tables, python = [], None
  for i, line in enumerate(lines):
    if line.startswith("#"):
      version = re.search(r"Python (\d+\.\d+)", line)
      python = version[1] if version else None
    elif line.lstrip().startswith("|") and _cells(line)[0] == "model":
      tables.append((python, _read_table(lines, i, path)))
  if not tables:
    raise ValueError(f"{path}: no table with a 'model' column")
  return tables


def zoo_table(path=README, python=None, from_python=None):
  """{model: (negative ELBO, its s.e., exact NLL or None)} that a run on
  Python `python` ("X.Y"; default: this one) must reproduce.

  That is the first table's rows, except for the models in `from_python`
  (default: the shipped models whose dataset is made from Python's own
  files, datasets.FROM_PYTHON): their figures hold only on the Python that
  the heading above a table names, so they come from the table for
  `python`, and are left out where the README has none for it.
  """
  python = python or "%d.%d" % sys.version_info[:2]
  if from_python is None:
    from_python = {name for name in _shipped_names()
                   if servable.read_config(os.path.join(ZOO, name)).dataset
                   in datasets.FROM_PYTHON}
  (main_python, main), *others = zoo_tables(path)
  table = {n: v for n, v in main.items() if n not in from_python or main_python == python}
  for version, rows in others:
    if version == python:
      table.update({n: v for n, v in rows.items() if n in from_python})
  return table


def _shipped_names():
  return {name for name in os.listdir(ZOO) if os.path.isdir(os.path.join(ZOO, name, "serving"))}


STATED = zoo_table()


def test_zoo_table_states_every_shipped_model():
  shipped = _shipped_names()
  stated = set().union(*(rows for _, rows in zoo_tables()))
  assert shipped and stated == shipped, (sorted(stated), sorted(shipped))
  # The default stacks' Pythons (Makefile: 3.12 and 3.11) have every figure.
  for python in ("3.11", "3.12"):
    assert set(zoo_table(python=python)) == shipped, python


def test_zoo_table_takes_python_dependent_rows_from_their_python(tmp_path):
  (tmp_path / "README.md").write_text("\n".join([
      "# Zoo", "## Figures on Python 3.11",
      "| model | test ELBO | exact NLL |", "|---|---|---|",
      "| `a` | 1.250 ± 0.010 bits/dim | 1.300 bits/dim |",
      "| `t` | 2.500 ± 0.020 bits/char | not measured |", "",
      "## Text figures on Python 3.12", "Measured there.", "",
      "| model | test negative ELBO | exact NLL, fixed order |", "|---|---|---|",
      "| `t` | 2.400 ± 0.030 bits/char | 2.450 bits/char |",
      "| `a` | 9.000 ± 0.010 bits/dim | not measured |"]), encoding="utf-8")
  read = functools.partial(zoo_table, tmp_path / "README.md", from_python={"t"})
  assert read(python="3.11") == {"a": (1.25, 0.01, 1.3), "t": (2.5, 0.02, None)}
  # A model that is not Python-dependent keeps the first table's figures.
  assert read(python="3.12") == {"a": (1.25, 0.01, 1.3), "t": (2.4, 0.03, 2.45)}
  assert read(python="3.10") == {"a": (1.25, 0.01, 1.3)}


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
  with pytest.raises(UserError, match="cannot read the model config"):
    servable.read_config(str(tmp_path))
  (broken / "assets.extra.json").write_text("{not json", encoding="utf-8")
  with pytest.raises(UserError, match="cannot read the model config"):
    servable.read_config(str(tmp_path))


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
