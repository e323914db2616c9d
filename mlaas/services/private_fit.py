"""Differentially private fits of a recipe: a STRICT deployment's retraining with
`privacy_epsilon` in its policy, on its node. Built on IBM's diffprivlib.

diffprivlib does not import beside the scikit-learn the mesh runs (its forest module needs
symbols scikit-learn 1.9 removed), so it runs in an environment of its own: `.venv-dp`, which
`make install` makes (MLAAS_DP_PYTHON names another Python). There `dp_fit.py` fits the recipe
and writes the fitted arrays; here they are set on the recipe's own scikit-learn estimators,
which export to ONNX like any fit.

- Each step that learns from the rows (StandardScaler, LogisticRegression, GaussianNB) spends an
  equal share of epsilon: sequential composition. A step that learns nothing from them
  (PolynomialFeatures) costs nothing.
- The bounds a private estimator needs (each feature's range, the rows' largest norm) come from
  the model's registered reference data, the owner's own rows and not the node's, passed through
  the steps before it. So they reveal nothing of the node's rows; rows outside them are clipped.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from mlaas.recipes import build_pipeline, step_params
from mlaas.services.dp_fit import PRIVATE
from mlaas.v1 import types_pb2

DATA_FREE = frozenset({"sklearn.preprocessing.PolynomialFeatures"})
FINAL = ("sklearn.linear_model.LogisticRegression", "sklearn.naive_bayes.GaussianNB")
DP_PYTHON = "MLAAS_DP_PYTHON"


def dp_python() -> str:
    """The DP environment's Python: MLAAS_DP_PYTHON, else `.venv-dp` beside the mesh's source."""
    return os.environ.get(DP_PYTHON) or str(Path(__file__).resolve().parents[2] / ".venv-dp" / "bin" / "python")


def private_recipe_problem(recipe: types_pb2.TrainingRecipe) -> str:
    """'' when the recipe can be fitted with differential privacy, else why not."""
    names = [step.estimator for step in recipe.steps]
    unknown = [name for name in names if name not in PRIVATE and name not in DATA_FREE]
    if unknown:
        return f"no differentially private counterpart for {', '.join(unknown)}"
    if not names or names[-1] not in FINAL:
        return f"a private recipe must end in one of {', '.join(FINAL)} (classification only, for now)"
    return ""


def fit_private(
    recipe: types_pb2.TrainingRecipe, X: np.ndarray, y: np.ndarray, reference: np.ndarray, epsilon: float
) -> tuple[object, float]:
    """(the recipe's pipeline fitted with differential privacy at `epsilon`, the epsilon spent)."""
    if problem := private_recipe_problem(recipe):
        raise ValueError(problem)
    steps = [{"estimator": step.estimator, "params": step_params(step)} for step in recipe.steps]
    with tempfile.TemporaryDirectory(prefix="dp-fit-") as work:
        directory = Path(work)
        (directory / "spec.json").write_text(json.dumps({"steps": steps, "epsilon": epsilon}))
        np.savez(directory / "in.npz", X=X, y=y, R=reference)
        source = str(Path(__file__).resolve().parents[2])  # where `mlaas` is: dp_fit needs nothing else of it
        done = subprocess.run(
            [dp_python(), "-m", "mlaas.services.dp_fit", work], capture_output=True, text=True,
            env={**os.environ, "PYTHONPATH": source},
        )  # fmt: skip
        if done.returncode != 0:
            raise RuntimeError(f"the private fit failed ({dp_python()}): {done.stderr.strip()[-600:]}")
        with np.load(directory / "out.npz", allow_pickle=False) as out:
            fitted = {name: out[name] for name in out.files}
    return _assemble(recipe, fitted, reference), float(fitted["epsilon_spent"])


def _assemble(recipe: types_pb2.TrainingRecipe, fitted: dict[str, np.ndarray], reference: np.ndarray):
    """The recipe's scikit-learn pipeline with the private steps' fitted arrays set on it, and the
    others fitted on the reference rows as dp_fit fitted them."""
    pipeline = build_pipeline(recipe)
    rows = reference
    for index, (_, estimator) in enumerate(pipeline.steps):
        name = recipe.steps[index].estimator
        if name in DATA_FREE:
            estimator.fit(rows)
        else:
            for key, value in fitted.items():
                if key.startswith(f"{index}."):
                    setattr(estimator, key.split(".", 1)[1], value)
            estimator.n_features_in_ = rows.shape[1]
        if hasattr(estimator, "transform"):
            rows = estimator.transform(rows)
    return pipeline
