"""The differentially private fit of a recipe's final estimator, run in the DP environment's
Python (see private_fit.py): `python -m mlaas.retraining.dp_fit DIR`.

DIR/spec.json names the estimator, its parameters and epsilon; DIR/in.npz holds the rows X (as
the recipe's earlier steps transformed them), the labels y and the public reference rows R (the
same way transformed), which bound the fit: the rows' largest norm, or each feature's range. The
estimator is fitted with diffprivlib; DIR/out.npz gets its fitted arrays and the epsilon
diffprivlib's accountant counted. Imports only numpy and diffprivlib: this runs beside a
different scikit-learn than the mesh's.
"""

from __future__ import annotations

import importlib
import inspect
import json
import sys
import warnings
from pathlib import Path

import numpy as np

# The estimators with a private counterpart: diffprivlib's class, and what it leaves fitted.
PRIVATE = {
    "sklearn.linear_model.LogisticRegression": (
        "diffprivlib.models.LogisticRegression",
        ("coef_", "intercept_", "classes_"),
    ),
    "sklearn.naive_bayes.GaussianNB": ("diffprivlib.models.GaussianNB", ("theta_", "var_", "class_prior_", "classes_")),
}


def fit(estimator: str, params: dict, epsilon: float, X: np.ndarray, y: np.ndarray, R: np.ndarray) -> dict:
    from diffprivlib import BudgetAccountant
    from diffprivlib.utils import PrivacyLeakWarning

    warnings.simplefilter("error", PrivacyLeakWarning)  # a bound left to the data would leak it
    path, attributes = PRIVATE[estimator]
    module, _, name = path.rpartition(".")
    cls = getattr(importlib.import_module(module), name)
    accepted = set(inspect.signature(cls.__init__).parameters)
    kwargs = {k: v for k, v in params.items() if k in accepted}
    if "data_norm" in accepted:
        kwargs["data_norm"] = float(np.linalg.norm(R, axis=1).max()) or 1.0
    else:
        low, high = R.min(axis=0), R.max(axis=0)
        kwargs["bounds"] = (low, np.where(high > low, high, low + 1.0))  # a constant column still needs a range
    accountant = BudgetAccountant()
    fitted = cls(epsilon=epsilon, accountant=accountant, **kwargs).fit(X, y)
    out = {name: np.asarray(getattr(fitted, name)) for name in attributes}
    out["epsilon_spent"] = np.asarray(accountant.total()[0])
    return out


def main(argv: list[str]) -> int:
    directory = Path(argv[0])
    spec = json.loads((directory / "spec.json").read_text())
    with np.load(directory / "in.npz", allow_pickle=False) as data:
        X, y, R = data["X"].astype(np.float64), data["y"], data["R"].astype(np.float64)
    np.savez(directory / "out.npz", **fit(spec["estimator"], spec["params"], spec["epsilon"], X, y, R))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
