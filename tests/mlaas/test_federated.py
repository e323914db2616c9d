"""Federated averaging's arithmetic and refusals (the rounds on real parts are in
tests/monitor_svc/test_loop.py)."""

from __future__ import annotations

import numpy as np
import pytest

from mlaas.recipes import recipe_from_steps
from mlaas.retraining.federated import average, federated_recipe_problem

RECIPE = recipe_from_steps([
    ("sklearn.preprocessing.StandardScaler", {}), ("sklearn.linear_model.LogisticRegression", {}),
])  # fmt: skip


def site(coef: float, classes=("0", "1")) -> dict[str, np.ndarray]:
    return {"coef_": np.full((1, 2), coef), "intercept_": np.array([coef]), "classes_": np.array(classes)}


def test_sites_are_averaged_by_their_samples():
    averaged = average(RECIPE, [(site(1.0), 100), (site(4.0), 300)])
    assert np.allclose(averaged["coef_"], 3.25) and np.allclose(averaged["intercept_"], 3.25)
    assert list(averaged["classes_"]) == ["0", "1"]


def test_sites_that_saw_other_classes_are_refused_without_naming_them():
    """The classes are labels of the sites': the message, which the Monitor keeps on the
    retraining, says only how many each had."""
    with pytest.raises(ValueError, match=r"site 2 has other classes_ than site 1 \(2 vs 2\)") as refused:
        average(RECIPE, [(site(1.0, ("hiv+", "none")), 10), (site(1.0, ("cancer", "none")), 10)])
    assert "hiv" not in str(refused.value) and "cancer" not in str(refused.value)


def test_only_linear_classifiers_after_shared_steps_can_be_federated():
    assert federated_recipe_problem(RECIPE) == ""
    forest = recipe_from_steps([("sklearn.ensemble.RandomForestClassifier", {})])
    assert "needs a linear classifier last" in federated_recipe_problem(forest)
    fitted_on_site = recipe_from_steps([
        ("sklearn.tree.DecisionTreeClassifier", {}), ("sklearn.linear_model.LogisticRegression", {}),
    ])  # fmt: skip
    assert "must be fitted alike at every site" in federated_recipe_problem(fitted_on_site)
