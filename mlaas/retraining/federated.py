"""Federated retraining of a linear recipe: STRICT deployments of one model on several nodes
(sites) retrain together, and only parameters and counts leave each site.

One round, from the sites' shared starting point (the serving version's recipe, whose steps
before the final estimator are fitted on the model's registered reference rows, the owner's own,
so every site transforms its rows the same way):
1. each site fits the final estimator on its training part and sends its arrays (coef_,
   intercept_) with its sample count (`local_parameters`);
2. the mesh averages them, weighted by samples: Flower's FedAvg aggregation (`average`), into a
   candidate model (`assemble`);
3. each site judges the candidate against the serving version on its held-out part and sends the
   counts of samples only one of them got right; the pooled counts decide (McNemar's test).

Federated averaging needs parameters that mean the same at every site: the final estimator must
be a linear classifier (LogisticRegression, SGDClassifier; the pooled test is McNemar's, which
regression's signed-rank test cannot be pooled into). Trees and forests have no parameters to
average (pooling the sites' trees into one forest would be the next step).
"""

from __future__ import annotations

import numpy as np

from mlaas.retraining.private_fit import PUBLIC_STEPS, before_final, shared_start
from mlaas.v1 import types_pb2

# The averaged arrays of each linear estimator, and those that must be the same at every site.
LINEAR = {
    "sklearn.linear_model.LogisticRegression": (("coef_", "intercept_"), ("classes_",)),
    "sklearn.linear_model.SGDClassifier": (("coef_", "intercept_"), ("classes_",)),
}


def federated_recipe_problem(recipe: types_pb2.TrainingRecipe) -> str:
    """'' when the recipe can be retrained federated, else why not."""
    names = [step.estimator for step in recipe.steps]
    if not names or names[-1] not in LINEAR:
        last = names[-1] if names else "an empty recipe"
        return f"federated averaging needs a linear classifier last ({', '.join(LINEAR)}), not {last}"
    others = [name for name in names[:-1] if name not in PUBLIC_STEPS]
    if others:
        return f"steps before the final estimator must be fitted alike at every site; {', '.join(others)} is not"
    return ""


def local_parameters(
    recipe: types_pb2.TrainingRecipe, X: np.ndarray, y: np.ndarray, reference: np.ndarray
) -> dict[str, np.ndarray]:
    """One site's fit: the final estimator's arrays, fitted on rows as the shared steps transform them."""
    if problem := federated_recipe_problem(recipe):
        raise ValueError(problem)
    pipeline = shared_start(recipe, reference)
    final = pipeline.steps[-1][1].fit(before_final(pipeline, X), y)
    averaged, shared = LINEAR[recipe.steps[-1].estimator]
    return {name: np.asarray(getattr(final, name)) for name in (*averaged, *shared)}


def average(recipe: types_pb2.TrainingRecipe, sites: list[tuple[dict[str, np.ndarray], int]]) -> dict[str, np.ndarray]:
    """The sites' (parameters, samples), averaged weighted by samples (Flower's FedAvg)."""
    from flwr.server.strategy.aggregate import aggregate

    averaged, shared = LINEAR[recipe.steps[-1].estimator]
    first = sites[0][0]
    for site, (parameters, _) in enumerate(sites, start=1):
        for name in shared:  # the message names no value: a class is a label of a site's
            if not np.array_equal(parameters[name], first[name]):
                raise ValueError(f"site {site} has other {name} than site 1 ({parameters[name].size} vs "
                                 f"{first[name].size}): every site must have seen every class to average")  # fmt: skip
        for name in averaged:
            if parameters[name].shape != first[name].shape:
                raise ValueError(f"the sites' {name} have different shapes: cannot average")
    result = aggregate([([parameters[name] for name in averaged], samples) for parameters, samples in sites])
    return {**dict(zip(averaged, result, strict=True)), **{name: first[name] for name in shared}}


def assemble(recipe: types_pb2.TrainingRecipe, reference: np.ndarray, parameters: dict[str, np.ndarray]):
    """The candidate: the shared steps, and the final estimator with the averaged arrays set."""
    pipeline = shared_start(recipe, reference)
    final = pipeline.steps[-1][1]
    for name, value in parameters.items():
        setattr(final, name, value)
    final.n_features_in_ = parameters["coef_"].shape[-1]
    return pipeline
