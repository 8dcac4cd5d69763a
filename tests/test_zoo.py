"""The shipped models load and give the bits/dim that savedmodels/README.md states."""
import os

import numpy as np
import pytest

from tf_ardm import evaluation
from tf_ardm.data import datasets
from tf_ardm.errors import UserError

ZOO = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "savedmodels")
# (model, ELBO bits/dim, its standard error, exact fixed-order NLL) from the README.
STATED = [("digits", 1.723, 0.015, 1.741)]


@pytest.mark.slow
@pytest.mark.parametrize("name,elbo,se,nll", STATED)
def test_shipped_model_matches_readme(name, elbo, se, nll):
  with open(os.path.join(ZOO, "README.md")) as f:
    readme = f.read()
  assert f"{elbo:.3f} ± {se:.3f}" in readme and f"{nll:.3f}" in readme
  scorer, config = evaluation.load_scorer(model=os.path.join(ZOO, name))
  x = datasets.load(config.dataset).splits["test"]
  measured_nll = evaluation.exact_nll(scorer, x, config.num_steps)
  assert measured_nll == pytest.approx(nll, abs=1e-3)
  measured, measured_se = evaluation.elbo(scorer, x, np.arange(config.num_steps), passes=4,
                                          seed=7)
  assert abs(measured - elbo) < 3 * np.hypot(se, measured_se), (measured, elbo)


def test_missing_or_corrupt_shipped_model_gives_clear_error(tmp_path):
  with pytest.raises(UserError, match="not a SavedModel export"):
    evaluation.load_scorer(model=str(tmp_path / "digits"))
  broken = tmp_path / "serving" / "1"
  broken.mkdir(parents=True)
  (broken / "saved_model.pb").write_bytes(b"\x00garbage")
  with pytest.raises(UserError, match="cannot load the SavedModel"):
    evaluation.load_scorer(model=str(tmp_path))
