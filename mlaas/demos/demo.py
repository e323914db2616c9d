"""Demo models: small scikit-learn models trained on the datasets scikit-learn ships
(iris, wine, breast_cancer, digits), exported to ONNX and registered with full descriptions,
held-out metrics, training recipes and reference data."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from mlaas.export import register_sklearn
from mlaas.v1 import types_pb2

SEED = 0


class Estimator(Protocol):
    """What a demo does with a scikit-learn estimator (scikit-learn has no types of its own)."""

    def fit(self, X: np.ndarray, y: np.ndarray) -> object: ...

    def predict(self, X: np.ndarray) -> np.ndarray: ...


@dataclass(frozen=True)
class DemoModel:
    name: str
    dataset: str
    make: Callable[[], Estimator]
    summary: str
    tags: tuple[str, ...]


def _catalogue() -> list[DemoModel]:
    from sklearn.ensemble import GradientBoostingClassifier, RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return [
        DemoModel(
            "iris-logreg",
            "iris",
            lambda: make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)),
            "Iris species from sepal and petal sizes; linear, explains itself through coefficients.",
            ("demo", "tabular", "botany"),
        ),
        DemoModel(
            "wine-forest",
            "wine",
            lambda: RandomForestClassifier(n_estimators=50, max_depth=6, random_state=SEED),
            "Wine cultivar from 13 chemical measurements.",
            ("demo", "tabular", "food"),
        ),
        DemoModel(
            "breast-cancer-gb",
            "breast_cancer",
            lambda: GradientBoostingClassifier(n_estimators=100, max_depth=3, random_state=SEED),
            "Malignant or benign tumour from 30 cell-nucleus features.",
            ("demo", "tabular", "medical"),
        ),
        DemoModel(
            "digits-mlp",
            "digits",
            lambda: make_pipeline(StandardScaler(), MLPClassifier((64,), max_iter=300, random_state=SEED)),
            "Handwritten digit from an 8x8 image (64 pixel intensities).",
            ("demo", "vision"),
        ),
        DemoModel(
            "digits-forest",
            "digits",
            lambda: RandomForestClassifier(n_estimators=100, random_state=SEED),
            "Handwritten digit from an 8x8 image; a 100-tree forest (the runtime benchmark model).",
            ("demo", "vision"),
        ),
    ]


def load_dataset(name: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    from sklearn import datasets

    bunch = getattr(datasets, f"load_{name}")()
    return bunch.data.astype(np.float32), bunch.target, [str(f) for f in bunch.feature_names]


def register_demo_models(client, log: Callable[[str], None] = print) -> list[types_pb2.ModelVersion]:
    """Trains and registers every demo model; idempotent (same bytes, same version)."""
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.metrics import accuracy_score, f1_score
    from sklearn.model_selection import train_test_split

    registered = []
    for demo in _catalogue():
        X, y, features = load_dataset(demo.dataset)
        X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.25, random_state=SEED, stratify=y)
        model = demo.make()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            model.fit(X_train, y_train)
        predicted = model.predict(X_test)
        split = f"{demo.dataset}/test"
        metrics = [
            types_pb2.Metric(name="accuracy", value=float(accuracy_score(y_test, predicted)), dataset=split),
            types_pb2.Metric(name="f1_macro", value=float(f1_score(y_test, predicted, average="macro")), dataset=split),
        ]
        response = register_sklearn(
            client,
            model,
            demo.name,
            X_train,
            metrics=metrics,
            tags=demo.tags,
            summary=demo.summary,
            feature_names=features,
        )
        version = response.model
        log(
            f"  {'registered' if response.created else 'kept'} {demo.name}:{version.version} "
            f"(accuracy {metrics[0].value:.3f})"
        )
        registered.append(version)
    return registered
