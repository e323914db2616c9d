"""Training recipes: scikit-learn pipelines rebuilt from an allowlist of estimators.

A recipe names estimators by their import path and gives JSON hyperparameters. Nothing from a
user is ever imported or unpickled: only the classes below can be built, and only with the
parameters their constructors accept.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Mapping, Sequence
from typing import Any

from google.protobuf import json_format

from mlaas.errors import InvalidArgument
from mlaas.v1 import types_pb2

ALLOWED_ESTIMATORS = frozenset(
    {
        "sklearn.preprocessing.StandardScaler",
        "sklearn.preprocessing.MinMaxScaler",
        "sklearn.preprocessing.PolynomialFeatures",
        "sklearn.decomposition.PCA",
        "sklearn.linear_model.LogisticRegression",
        "sklearn.linear_model.LinearRegression",
        "sklearn.linear_model.Ridge",
        "sklearn.linear_model.SGDClassifier",
        "sklearn.tree.DecisionTreeClassifier",
        "sklearn.tree.DecisionTreeRegressor",
        "sklearn.ensemble.RandomForestClassifier",
        "sklearn.ensemble.RandomForestRegressor",
        "sklearn.ensemble.GradientBoostingClassifier",
        "sklearn.ensemble.GradientBoostingRegressor",
        "sklearn.ensemble.HistGradientBoostingClassifier",
        "sklearn.ensemble.HistGradientBoostingRegressor",
        "sklearn.neural_network.MLPClassifier",
        "sklearn.neural_network.MLPRegressor",
        "sklearn.neighbors.KNeighborsClassifier",
        "sklearn.naive_bayes.GaussianNB",
        "sklearn.svm.SVC",
    }
)


# The hyperparameters that scale a fit's time or memory, and how far a recipe may take them: a
# training job holds a node's CPU while it runs, so `n_estimators=1e9` is refused at registration.
PARAMETER_LIMITS = {
    "n_estimators": 2_000,
    "max_iter": 100_000,
    "max_depth": 128,
    "max_leaf_nodes": 1_000_000,
    "degree": 6,
    "n_neighbors": 10_000,
    "n_components": 4_096,
}
MAX_HIDDEN_LAYERS, MAX_LAYER_WIDTH = 8, 4_096


def _check_limits(index: int, step: types_pb2.RecipeStep, params: Mapping[str, Any]) -> None:
    def refuse(what: str) -> InvalidArgument:
        return InvalidArgument(f"recipe step {index} ({step.estimator}): {what} (training jobs have bounded resources)")

    for name, limit in PARAMETER_LIMITS.items():
        value = params.get(name)
        if isinstance(value, int | float) and value > limit:
            raise refuse(f"{name}={value:g} is above the limit of {limit}")
    layers = params.get("hidden_layer_sizes")
    if isinstance(layers, list | tuple) and (
        len(layers) > MAX_HIDDEN_LAYERS or any(not isinstance(w, int | float) or w > MAX_LAYER_WIDTH for w in layers)
    ):
        raise refuse(f"hidden_layer_sizes may have {MAX_HIDDEN_LAYERS} layers of {MAX_LAYER_WIDTH} at most")


def _estimator_class(path: str) -> type[Any]:
    if path not in ALLOWED_ESTIMATORS:
        raise InvalidArgument(
            f"recipe estimator {path!r} is not allowed; choose one of: {', '.join(sorted(ALLOWED_ESTIMATORS))}"
        )
    module, _, name = path.rpartition(".")
    return getattr(importlib.import_module(module), name)


def step_params(step: types_pb2.RecipeStep) -> dict[str, Any]:
    params = json_format.MessageToDict(step.params) if step.HasField("params") else {}
    # JSON has only floats; give integral values back to constructors that expect ints.
    return {k: int(v) if isinstance(v, float) and v.is_integer() else v for k, v in params.items()}


def validate_recipe(recipe: types_pb2.TrainingRecipe) -> None:
    """Raises InvalidArgument unless every step is allowed and takes its parameters."""
    for index, step in enumerate(recipe.steps):
        cls = _estimator_class(step.estimator)
        accepted = set(inspect.signature(cls.__init__).parameters) - {"self"}
        params = step_params(step)
        unknown = sorted(set(params) - accepted)
        if unknown:
            raise InvalidArgument(
                f"recipe step {index} ({step.estimator}) has unknown parameters {unknown}; accepted: {sorted(accepted)}"
            )
        _check_limits(index, step, params)
    if recipe.steps:
        build_pipeline(recipe)


def build_pipeline(recipe: types_pb2.TrainingRecipe):
    """A fresh, unfitted scikit-learn Pipeline for the recipe."""
    from sklearn.pipeline import Pipeline

    steps = []
    for index, step in enumerate(recipe.steps):
        cls = _estimator_class(step.estimator)
        try:
            estimator = cls(**step_params(step))
            # scikit-learn checks values only when fitting; check them now, at registration.
            if hasattr(estimator, "_validate_params"):
                estimator._validate_params()
            steps.append((f"step{index}", estimator))
        except (TypeError, ValueError) as err:
            raise InvalidArgument(f"recipe step {index} ({step.estimator}): {err}") from None
    return Pipeline(steps)


def recipe_from_steps(steps: Sequence[tuple[str, Mapping[str, Any]]]) -> types_pb2.TrainingRecipe:
    recipe = types_pb2.TrainingRecipe()
    for estimator, params in steps:
        step = recipe.steps.add(estimator=estimator)
        step.params.update(dict(params))
    return recipe
