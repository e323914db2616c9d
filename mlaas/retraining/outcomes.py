"""Whether each labeled prediction was wrong, the same way wherever labels are matched (the
Monitor for OPEN deployments, a STRICT deployment's node): a classification is wrong when its
label differs; a regression when its residual is beyond the 90th percentile of the first
REGRESSION_BASELINE residuals, so that "error rate" means the same thing for both."""

from __future__ import annotations

import numpy as np

from mlaas.services.label_store import Labeled, finite_number

REGRESSION_BASELINE = 200


def usable(labeled: list[Labeled], classification: bool) -> list[Labeled]:
    """The labeled predictions a model can learn from and be judged on: for a regression, those
    whose label is a finite number (a label sent as text may be anything)."""
    if classification:
        return labeled
    return [x for x in labeled if finite_number(x.label) is not None]


def targets(labels: list[str], classification: bool) -> np.ndarray:
    """Labels as the model's outputs are typed: integers when every class label is one."""
    if not classification:
        return np.array([float(v) for v in labels])
    try:
        return np.array([int(v) for v in labels], dtype=np.int64)
    except ValueError:
        return np.array(labels)


def paired_gain(classification: bool, y_true, champion, challenger) -> np.ndarray:
    """Per row, how much better the challenger did than the champion: for classification 1 where
    only it was right, -1 where only the champion was, else 0; otherwise how much closer it came
    (the difference of absolute errors)."""
    if classification:
        truth = np.asarray(y_true).astype(str)
        champion_right = np.asarray(champion).astype(str) == truth
        challenger_right = np.asarray(challenger).astype(str) == truth
        return challenger_right.astype(np.int64) - champion_right.astype(np.int64)
    truth = np.asarray(y_true, dtype=float)
    return np.abs(truth - np.asarray(champion, dtype=float)) - np.abs(truth - np.asarray(challenger, dtype=float))


class Outcomes:
    def __init__(self, classification: bool):
        self._classification = classification
        self._residual_limit: float | None = None
        self._residuals: list[float] = []

    def errors(self, labeled: list[Labeled]) -> np.ndarray:
        """1.0 for each wrong prediction, 0.0 for each right one, in order (a regression's
        first ones only once its baseline is complete; labels that are not numbers left out)."""
        if self._classification:
            return np.array([x.prediction != x.label for x in labeled], dtype=np.float64)
        labeled = usable(labeled, classification=False)
        residuals = np.abs(np.array([float(x.prediction) - float(x.label) for x in labeled]))
        if self._residual_limit is None:
            self._residuals.extend(residuals.tolist())
            if len(self._residuals) < REGRESSION_BASELINE:
                return np.zeros(0)
            self._residual_limit = float(np.quantile(self._residuals, 0.9))
            residuals = np.asarray(self._residuals)
        return (residuals > self._residual_limit).astype(np.float64)
