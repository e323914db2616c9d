"""Synthetic streams with known drift, generated locally with fixed seeds: for the drift
benchmark, the tests and the drift demo.

- Covariate shift: a 5-dimensional standard Gaussian whose feature 0 moves by 0.5 sd at once,
  or ramps to 1 sd over 1,000 samples.
- SEA concepts (Street and Kim, 2001): three features uniform on [0, 10], label 1 when
  f1 + f2 <= threshold (concept 0: 8, 1: 9, 2: 7, 3: 9.5), with label noise.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Iterator
from typing import TypeVar

import numpy as np

T = TypeVar("T")

FEATURES = 5
REFERENCE_SIZE = 2_000
NULL_LENGTH = 10_000
SHIFT_LENGTH = 2_000
RAMP_LENGTH, RAMP_SPAN = 3_000, 1_000
SEA_THRESHOLDS = {0: 8.0, 1: 9.0, 2: 7.0, 3: 9.5}
SEA_CHANGE_AT = 2_000  # concept 0 before, concept 3 after
SEA_AFTER = 5_000


def covariate_streams(seeds: int) -> dict[str, np.ndarray]:
    """reference_0 (one fixed training sample) and, per seed, null_S, shift_S and ramp_S."""
    streams = {"reference_0": np.random.default_rng(12345).normal(size=(REFERENCE_SIZE, FEATURES))}
    for seed in range(seeds):
        rng = np.random.default_rng(seed)
        streams[f"null_{seed}"] = rng.normal(size=(NULL_LENGTH, FEATURES))
        shift = rng.normal(size=(SHIFT_LENGTH, FEATURES))
        shift[:, 0] += 0.5
        streams[f"shift_{seed}"] = shift
        ramp = rng.normal(size=(RAMP_LENGTH, FEATURES))
        ramp[:, 0] += np.minimum(np.arange(1, RAMP_LENGTH + 1) / RAMP_SPAN, 1.0)
        streams[f"ramp_{seed}"] = ramp
    return {k: v.astype(np.float32) for k, v in streams.items()}


def sea(n: int, concept: int, rng: np.random.Generator, noise: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    X = rng.uniform(0.0, 10.0, size=(n, 3))
    y = (X[:, 0] + X[:, 1] <= SEA_THRESHOLDS[concept]).astype(np.int64)
    flip = rng.random(n) < noise
    y[flip] = 1 - y[flip]
    return X.astype(np.float32), y


def sea_classifier(seed: int = 0, n: int = 5_000):
    """The champion: degree-2 polynomial features and logistic regression fitted on concept 0."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import PolynomialFeatures, StandardScaler

    X, y = sea(n, 0, np.random.default_rng(seed))
    return make_pipeline(PolynomialFeatures(2), StandardScaler(), LogisticRegression(max_iter=1000)).fit(X, y)


def sea_error_streams(seeds: int) -> dict[str, np.ndarray]:
    """Per seed, the champion's error stream (1 = wrong): sea_null_S (concept 0 throughout) and
    sea_drift_S (concept 0 for SEA_CHANGE_AT samples, then concept 3)."""
    model = sea_classifier()
    streams = {}
    for seed in range(seeds):
        rng = np.random.default_rng(1_000 + seed)
        X, y = sea(NULL_LENGTH, 0, rng)
        streams[f"sea_null_{seed}"] = (model.predict(X) != y).astype(np.int8)
        X0, y0 = sea(SEA_CHANGE_AT, 0, rng)
        X3, y3 = sea(SEA_AFTER, 3, rng)
        errors = np.concatenate([model.predict(X0) != y0, model.predict(X3) != y3])
        streams[f"sea_drift_{seed}"] = errors.astype(np.int8)
    return streams


def paced(rows: Iterable[T], per_second: float, stop: threading.Event | None = None) -> Iterator[T]:
    """`rows` at `per_second`, as an application sends them, until `stop` (if given) is set."""
    stop = stop or threading.Event()
    due = time.monotonic()
    for row in rows:
        if stop.wait(max(0.0, due - time.monotonic())):
            return
        yield row
        due += 1 / per_second
