"""Data drift from window summaries, for STRICT deployments whose raw inputs never leave their
node: each summary holds, per feature, the window's counts over bin edges the runtime chose; the
same edges applied to the reference data give the expected counts, and a chi-square test of
homogeneity (window vs reference, 2 x bins) asks whether they differ. Each window is tested at
level (window size / expected_run_length), split over the features (Bonferroni), so false alarms
come about once per `expected_run_length` samples whatever the number of features."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.special import chdtri

from mlaas.v1 import monitor_pb2
from monitor_svc.detectors import Alarm

STATISTIC = "chi2-histogram"


def homogeneity(window: np.ndarray, reference: np.ndarray) -> tuple[float, int]:
    """(chi-square, degrees of freedom) of two count vectors over the same bins."""
    keep = (window + reference) > 0
    table = np.vstack([window[keep], reference[keep]]).astype(np.float64)
    if table.shape[1] < 2:
        return 0.0, 1
    expected = table.sum(axis=1, keepdims=True) * table.sum(axis=0, keepdims=True) / table.sum()
    return float(((table - expected) ** 2 / expected).sum()), table.shape[1] - 1


DECILES = np.linspace(0.1, 0.9, 9)


class HistogramTest:
    """Window summaries of a STRICT runtime against the reference data, counted over `edges`:
    per feature, the deciles of the reference, never of the node's rows (the runtime is given
    them, and the Monitor refuses a summary over other edges before it gets here)."""

    def __init__(self, reference: np.ndarray, names: Sequence[str], expected_run_length: float):
        self._reference = np.asarray(reference, dtype=np.float64).reshape(len(reference), -1)
        self.edges = [np.unique(np.quantile(column, DECILES)) for column in self._reference.T]
        self.names = tuple(names)
        self._ert = expected_run_length
        self.samples = 0
        self.last_scores: dict[str, tuple[float, float]] = {}  # feature -> (chi-square, critical value)

    def update(self, summaries: Sequence[monitor_pb2.FeatureSummary]) -> Alarm | None:
        if not summaries:
            return None
        window = summaries[0].n
        self.samples += window
        level = min(0.5, window / self._ert) / len(summaries)
        found = []
        for summary in summaries:
            column = self._reference[:, summary.feature_index]
            edges = np.asarray(summary.bin_edges)

            expected = np.bincount(np.searchsorted(edges, column, side="right"), minlength=edges.size + 1)
            statistic, df = homogeneity(np.asarray(summary.counts), expected)
            critical = float(chdtri(df, level))  # the chi-squared upper quantile
            self.last_scores[self.names[summary.feature_index]] = (statistic, critical)
            found.append((statistic / critical, statistic, critical, self.names[summary.feature_index]))
        drifted = [f for f in found if f[0] > 1.0]
        if not drifted:
            return None
        _, statistic, critical, _ = max(drifted)
        features = tuple(name for *_, name in drifted)
        return Alarm(self.samples, features, STATISTIC, statistic, critical, window)
