"""Differentially private fits of a recipe: a STRICT deployment's retraining with
`privacy_epsilon` in its policy, on its node. Built on IBM's diffprivlib.

- The recipe's final estimator (LogisticRegression or GaussianNB) is fitted with diffprivlib's
  counterpart at the whole epsilon.
- The steps before it learn only the inputs' shape or scale (PolynomialFeatures, StandardScaler,
  MinMaxScaler, PCA). They are fitted on the model's registered reference data, the owner's own
  rows and not the node's, so they spend no epsilon. The same rows, transformed, bound the
  private fit (the rows' largest norm, or each feature's range); the node's rows outside those
  bounds are clipped.

diffprivlib does not import beside the scikit-learn the mesh runs (its forest module needs
symbols scikit-learn 1.9 removed), so it runs in an environment of its own: `.venv-dp`, which
`make install` makes (MLAAS_DP_PYTHON names another Python). There `dp_fit.py` fits the final
estimator and writes its fitted arrays; here they are set on the recipe's own scikit-learn
estimator, which exports to ONNX like any fit.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from mlaas.recipes import build_pipeline, step_params
from mlaas.retraining.dp_fit import PRIVATE
from mlaas.v1 import types_pb2

# Fitted on the owner's reference rows: they learn the inputs' shape or scale, never the labels.
PUBLIC_STEPS = frozenset({
    "sklearn.preprocessing.PolynomialFeatures", "sklearn.preprocessing.StandardScaler",
    "sklearn.preprocessing.MinMaxScaler", "sklearn.decomposition.PCA",
})  # fmt: skip
DP_PYTHON = "MLAAS_DP_PYTHON"


def dp_python() -> str:
    """The DP environment's Python: MLAAS_DP_PYTHON, else `.venv-dp` beside the mesh's source."""
    return os.environ.get(DP_PYTHON) or str(Path(__file__).resolve().parents[2] / ".venv-dp" / "bin" / "python")


def private_recipe_problem(recipe: types_pb2.TrainingRecipe) -> str:
    """'' when the recipe can be fitted with differential privacy, else why not."""
    names = [step.estimator for step in recipe.steps]
    if not names or names[-1] not in PRIVATE:
        last = names[-1] if names else "an empty recipe"
        return (
            f"no differentially private counterpart for {last}; a private recipe ends in one of "
            f"{', '.join(PRIVATE)} (classification only, for now)"
        )
    others = [name for name in names[:-1] if name not in PUBLIC_STEPS]
    if others:
        return f"no differentially private counterpart for {', '.join(others)}"
    return ""


def shared_start(recipe: types_pb2.TrainingRecipe, reference: np.ndarray):
    """The recipe's pipeline with its steps before the final estimator fitted on the reference
    rows (the owner's): where a private fit and every federated site start from."""
    pipeline = build_pipeline(recipe)
    for _, step in pipeline.steps[:-1]:
        reference = step.fit_transform(reference)
    return pipeline


def before_final(pipeline, rows: np.ndarray) -> np.ndarray:
    """Rows as the pipeline's steps before its final estimator transform them."""
    return pipeline[:-1].transform(rows) if len(pipeline) > 1 else rows


def fit_private(
    recipe: types_pb2.TrainingRecipe, X: np.ndarray, y: np.ndarray, reference: np.ndarray, epsilon: float
) -> tuple[object, float]:
    """(the recipe's pipeline fitted with differential privacy at `epsilon`, the epsilon spent)."""
    if problem := private_recipe_problem(recipe):
        raise ValueError(problem)
    pipeline = shared_start(recipe, reference)  # on the owner's rows; the node's only pass through
    X, reference = before_final(pipeline, X), before_final(pipeline, reference)
    final = recipe.steps[-1]
    with tempfile.TemporaryDirectory(prefix="dp-fit-") as work:
        directory = Path(work)
        spec = {"estimator": final.estimator, "params": step_params(final), "epsilon": epsilon}
        (directory / "spec.json").write_text(json.dumps(spec))
        np.savez(directory / "in.npz", X=X, y=y, R=reference)
        source = str(Path(__file__).resolve().parents[2])  # where `mlaas` is: dp_fit needs nothing else of it
        done = subprocess.run(
            [dp_python(), "-m", "mlaas.retraining.dp_fit", work], capture_output=True, text=True,
            env={**os.environ, "PYTHONPATH": source},
        )  # fmt: skip
        if done.returncode != 0:
            raise RuntimeError(f"the private fit failed ({dp_python()}): {done.stderr.strip()[-600:]}")
        with np.load(directory / "out.npz", allow_pickle=False) as out:
            fitted = {name: out[name] for name in out.files}
    estimator = pipeline.steps[-1][1]
    for name, value in fitted.items():
        if name != "epsilon_spent":
            setattr(estimator, name, value)
    estimator.n_features_in_ = X.shape[1]
    return pipeline, float(fitted["epsilon_spent"])
