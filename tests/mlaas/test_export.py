"""Export helpers: a fitted scikit-learn model becomes ONNX whose outputs equal the
estimator's, and its description is filled from the estimator."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort

from mlaas.export import describe_sklearn, register_sklearn, sklearn_to_onnx
from mlaas.recipes import build_pipeline
from mlaas.v1 import types_pb2


def test_onnx_matches_scikit_learn(iris_model):
    model, X, _ = iris_model
    session = ort.InferenceSession(sklearn_to_onnx(model, X), providers=["CPUExecutionProvider"])
    labels, probabilities = session.run(["label", "probabilities"], {session.get_inputs()[0].name: X})
    assert np.array_equal(labels, model.predict(X))
    assert np.allclose(probabilities, model.predict_proba(X), atol=1e-5)


def test_description_from_the_estimator(iris_model):
    model, X, y = iris_model
    desc = describe_sklearn(model)
    assert desc.task == types_pb2.TASK_CLASSIFICATION
    assert desc.family == "logistic_regression"
    assert desc.framework.startswith("scikit-learn ")
    assert desc.hyperparameters["max_iter"] == 500
    assert desc.explainability.level == types_pb2.EXPLAINABILITY_LEVEL_INTRINSIC
    assert "coefficients" in desc.explainability.methods
    assert [s.estimator for s in desc.recipe.steps] == [
        "sklearn.preprocessing.StandardScaler",
        "sklearn.linear_model.LogisticRegression",
    ]
    assert list(desc.class_labels) == ["0", "1", "2"]
    # The recipe rebuilds an equivalent model.
    rebuilt = build_pipeline(desc.recipe).fit(X, y)
    assert np.mean(rebuilt.predict(X) == model.predict(X)) > 0.98


def test_register_in_one_call(client, iris_model):
    model, X, _ = iris_model
    response = register_sklearn(client, model, "iris-one-call", X, metrics={"accuracy": 0.97}, tags=["demo"])
    registered = response.model
    assert registered.description.family == "logistic_regression"
    assert registered.description.metrics[0].value == 0.97
    assert registered.reference_rows == len(X)
    assert registered.signature.inputs[0].shape[1] == 4
