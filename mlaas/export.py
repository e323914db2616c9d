"""Turn a fitted model into ONNX and register it in one call.

The registry accepts only ONNX, so conversion happens here, on the client: a scikit-learn
estimator or pipeline through skl2onnx, or (extra `torch`) a PyTorch module through
torch.onnx. The description is filled from the estimator: family, hyperparameters,
explainability and, when every step is allowlisted, the training recipe for retraining.
"""

from __future__ import annotations

import importlib.metadata
import io
import json
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from mlaas.recipes import ALLOWED_ESTIMATORS, recipe_from_steps
from mlaas.v1 import types_pb2

REFERENCE_ROWS = 1000

_FAMILIES = {
    "LogisticRegression": "logistic_regression",
    "SGDClassifier": "linear_sgd",
    "LinearRegression": "linear_regression",
    "Ridge": "linear_regression",
    "DecisionTreeClassifier": "decision_tree",
    "DecisionTreeRegressor": "decision_tree",
    "RandomForestClassifier": "random_forest",
    "RandomForestRegressor": "random_forest",
    "GradientBoostingClassifier": "gradient_boosting",
    "GradientBoostingRegressor": "gradient_boosting",
    "HistGradientBoostingClassifier": "gradient_boosting",
    "HistGradientBoostingRegressor": "gradient_boosting",
    "MLPClassifier": "mlp",
    "MLPRegressor": "mlp",
    "KNeighborsClassifier": "k_nearest_neighbors",
    "SVC": "svm",
}
_INTRINSIC = {
    "LogisticRegression",
    "LinearRegression",
    "Ridge",
    "SGDClassifier",
    "DecisionTreeClassifier",
    "DecisionTreeRegressor",
}
_IMPORTANCES = {
    "RandomForestClassifier",
    "RandomForestRegressor",
    "GradientBoostingClassifier",
    "GradientBoostingRegressor",
    "DecisionTreeClassifier",
    "DecisionTreeRegressor",
}


def _final_estimator(estimator):
    return estimator.steps[-1][1] if hasattr(estimator, "steps") else estimator


def _json_scalars(params: Mapping[str, Any]) -> dict[str, Any]:
    """The parameters that survive a JSON round trip (drops nested estimators, callables...)."""
    kept: dict[str, object] = {}
    for key, value in params.items():
        if isinstance(value, np.generic):
            value = value.item()
        if value is None or isinstance(value, bool | int | float | str):
            kept[key] = value
        elif isinstance(value, list | tuple) and all(isinstance(v, int | float | str) for v in value):
            kept[key] = list(value)
    return json.loads(json.dumps(kept))


def _allowlisted_path(step) -> str | None:
    name = type(step).__name__
    return next((p for p in ALLOWED_ESTIMATORS if p.rsplit(".", 1)[1] == name), None)


def describe_sklearn(estimator) -> types_pb2.ModelDescription:
    """Family, framework, hyperparameters, explainability and recipe of a scikit-learn model."""
    from sklearn.base import is_classifier

    final = _final_estimator(estimator)
    kind = type(final).__name__
    desc = types_pb2.ModelDescription(
        task=types_pb2.TASK_CLASSIFICATION if is_classifier(estimator) else types_pb2.TASK_REGRESSION,
        family=_FAMILIES.get(kind, kind.lower()),
        framework=f"scikit-learn {importlib.metadata.version('scikit-learn')}",
    )
    desc.hyperparameters.update(_json_scalars(final.get_params(deep=False)))
    level = types_pb2.EXPLAINABILITY_LEVEL_INTRINSIC if kind in _INTRINSIC else types_pb2.EXPLAINABILITY_LEVEL_POST_HOC
    methods = ["coefficients"] if kind in _INTRINSIC and hasattr(final, "coef_") else []
    if kind in _IMPORTANCES:
        methods.append("feature_importances")
    methods.append("permutation_importance")
    desc.explainability.CopyFrom(types_pb2.Explainability(level=level, methods=methods))
    steps = [s for _, s in estimator.steps] if hasattr(estimator, "steps") else [estimator]
    paths = [p for p in map(_allowlisted_path, steps) if p]
    if len(paths) == len(steps):
        desc.recipe.CopyFrom(
            recipe_from_steps([(p, _json_scalars(s.get_params(deep=False))) for p, s in zip(paths, steps, strict=True)])
        )
    if hasattr(final, "classes_"):
        desc.class_labels.extend(str(c) for c in final.classes_)
    return desc


def sklearn_to_onnx(estimator, sample: np.ndarray) -> bytes:
    """ONNX bytes of a fitted estimator taking FP32 rows; classifiers give `label` and a
    `probabilities` tensor (no ZipMap, so every output is a plain tensor)."""
    from skl2onnx import convert_sklearn
    from skl2onnx.algebra.type_helper import guess_initial_types

    from mlaas.onnx_forests import CONVERTERS

    final = _final_estimator(estimator)
    options = {id(final): {"zipmap": False}} if hasattr(final, "predict_proba") else None
    onnx_model = convert_sklearn(
        estimator,
        f"ONNX({type(estimator).__name__})",
        guess_initial_types(np.asarray(sample[:1], dtype=np.float32), None),
        options=options,
        target_opset={"": 17, "ai.onnx.ml": 3},
        custom_conversion_functions=CONVERTERS,
    )
    return onnx_model.SerializeToString()


def register_sklearn(
    client,
    estimator,
    name: str,
    sample: np.ndarray,
    *,
    metrics: Mapping[str, float] | Iterable[types_pb2.Metric] = (),
    tags: Iterable[str] = (),
    summary: str = "",
    feature_names: Iterable[str] = (),
    reference_data: np.ndarray | None = None,
    visibility: types_pb2.Visibility = types_pb2.VISIBILITY_PUBLIC,
    run_resources: types_pb2.Resources | None = None,
    train_resources: types_pb2.Resources | None = None,
):
    """Exports a fitted scikit-learn model and registers it; returns RegisterModelResponse.

    `sample` is a few training rows (it fixes the input width and dtype); the reference data
    for drift detection defaults to up to 1000 of them.
    """
    desc = describe_sklearn(estimator)
    desc.name = name
    desc.summary = summary
    desc.tags.extend(tags)
    desc.feature_names.extend(feature_names)
    desc.visibility = visibility
    if isinstance(metrics, Mapping):
        desc.metrics.extend(types_pb2.Metric(name=k, value=float(v)) for k, v in metrics.items())
    else:
        desc.metrics.extend(metrics)
    if run_resources is not None:
        desc.run_resources.CopyFrom(run_resources)
    if train_resources is not None:
        desc.train_resources.CopyFrom(train_resources)
    sample = np.asarray(sample, dtype=np.float32)
    reference = reference_data if reference_data is not None else sample[:REFERENCE_ROWS]
    return client.register(sklearn_to_onnx(estimator, sample), desc, reference_data=np.asarray(reference))


def torch_to_onnx(module, example_input, input_name: str = "input", output_name: str = "output") -> bytes:
    """ONNX bytes of a PyTorch module, with a variable batch dimension (needs the torch extra)."""
    try:
        import torch
    except ImportError:
        raise ImportError("PyTorch export needs the extra: pip install 'mlaas-mesh[torch]'") from None
    buffer = io.BytesIO()
    module.eval()
    with torch.no_grad():
        torch.onnx.export(
            module,
            (example_input,),
            buffer,  # type: ignore[arg-type]  # typed as a path; the TorchScript exporter takes a file too
            input_names=[input_name],
            output_names=[output_name],
            dynamic_axes={input_name: {0: "batch"}, output_name: {0: "batch"}},
            dynamo=False,
        )
    return buffer.getvalue()


def register_torch(
    client, module, example_input, name: str, task: types_pb2.Task, *, family: str = "neural_network", **fields
):
    """Exports a PyTorch module and registers it; extra description fields as keyword args."""
    import torch

    desc = types_pb2.ModelDescription(
        name=name,
        task=task,
        family=family,
        framework=f"pytorch {torch.__version__}",
        explainability=types_pb2.Explainability(
            level=types_pb2.EXPLAINABILITY_LEVEL_POST_HOC,
            methods=["permutation_importance", "integrated_gradients"],
        ),
        **fields,
    )
    return client.register(torch_to_onnx(module, example_input), desc)
