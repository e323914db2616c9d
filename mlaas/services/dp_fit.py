"""The differentially private part of a fit, run in the DP environment's Python (see
private_fit.py): `python -m mlaas.services.dp_fit DIR`.

DIR/spec.json gives the recipe's steps and epsilon; DIR/in.npz the rows X, labels y and the
public reference rows R. Steps that learn nothing from the rows are fitted on R; each step that
does is fitted with diffprivlib at an equal share of epsilon, with bounds taken from R as the
steps before it transformed it. DIR/out.npz gets each private step's fitted arrays
("<step>.<attribute>") and the epsilon diffprivlib's accountant counted. Imports only numpy,
scikit-learn and diffprivlib: this runs beside a different scikit-learn than the mesh's.
"""

from __future__ import annotations

import importlib
import inspect
import json
import sys
import warnings
from pathlib import Path

import numpy as np

# What each private step leaves fitted, and the diffprivlib class that fits it.
PRIVATE = {
    "sklearn.preprocessing.StandardScaler": ("diffprivlib.models.StandardScaler", ("mean_", "var_", "scale_")),
    "sklearn.linear_model.LogisticRegression": (
        "diffprivlib.models.LogisticRegression",
        ("coef_", "intercept_", "classes_"),
    ),
    "sklearn.naive_bayes.GaussianNB": ("diffprivlib.models.GaussianNB", ("theta_", "var_", "class_prior_", "classes_")),
}


def _class(path: str) -> type:
    module, _, name = path.rpartition(".")
    return getattr(importlib.import_module(module), name)


def _bounds(R: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    low, high = R.min(axis=0), R.max(axis=0)
    return low, np.where(high > low, high, low + 1.0)  # a constant column still needs a range


def fit(steps: list[dict], epsilon: float, X: np.ndarray, y: np.ndarray, R: np.ndarray) -> dict[str, np.ndarray]:
    from diffprivlib import BudgetAccountant
    from diffprivlib.utils import PrivacyLeakWarning

    warnings.simplefilter("error", PrivacyLeakWarning)  # a bound left to the data would leak it
    accountant = BudgetAccountant()
    share = epsilon / sum(step["estimator"] in PRIVATE for step in steps)
    out: dict[str, np.ndarray] = {}
    for index, step in enumerate(steps):
        if step["estimator"] not in PRIVATE:  # learns nothing from the rows
            estimator = _class(step["estimator"])(**step["params"]).fit(R)
            X, R = estimator.transform(X), estimator.transform(R)
            continue
        path, attributes = PRIVATE[step["estimator"]]
        cls = _class(path)
        accepted = set(inspect.signature(cls.__init__).parameters)
        params = {k: v for k, v in step["params"].items() if k in accepted}
        if "data_norm" in accepted:
            params["data_norm"] = float(np.linalg.norm(R, axis=1).max()) or 1.0
        else:
            params["bounds"] = _bounds(R)
        estimator = cls(epsilon=share, accountant=accountant, **params)
        estimator.fit(X, y)
        out.update({f"{index}.{name}": np.asarray(getattr(estimator, name)) for name in attributes})
        if hasattr(estimator, "transform"):
            X, R = estimator.transform(X), estimator.transform(R)
    out["epsilon_spent"] = np.asarray(accountant.total()[0])
    return out


def main(argv: list[str]) -> int:
    directory = Path(argv[0])
    spec = json.loads((directory / "spec.json").read_text())
    with np.load(directory / "in.npz", allow_pickle=False) as data:
        X, y, R = data["X"].astype(np.float64), data["y"], data["R"].astype(np.float64)
    np.savez(directory / "out.npz", **fit(spec["steps"], spec["epsilon"], X, y, R))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
