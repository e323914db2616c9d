"""Error-rate increase detector (performance drift), of the ADWIN family: at every labeled
sample it compares the error rate of each recent window with the rate of everything before that
window since the start (or the last alarm), and alarms when a window is worse beyond chance.

Only increases count: a model getting better is no reason to act. The test is the signed root of
the binomial log-likelihood ratio (window rate vs earlier rate against one pooled rate), which
stays close to a standard normal far into the tail even for small rates, unlike the plain z of
two proportions, so a normal quantile gives the threshold. The false-alarm budget
`expected_run_length` is split over the windows (Bonferroni) and every sample is tested at
1/expected_run_length; consecutive tests overlap heavily, so real false alarms are rarer than
the budget (the benchmark measures them). O(longest window) memory.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.special import ndtri

from monitor_svc.detectors import Alarm

WINDOWS = (32, 64, 128, 256, 512, 1024)
MIN_EARLIER = 200  # samples before a window needed to trust the earlier rate
STATISTIC = "error-rate-lr"


def _xlogy(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(x > 0, x * np.log(np.where(y > 0, y, 1.0)), 0.0)


def _log_likelihood(errors: np.ndarray, n: np.ndarray, rate: np.ndarray) -> np.ndarray:
    return _xlogy(errors, rate) + _xlogy(n - errors, 1.0 - rate)


def signed_root_lr(window_errors, window_n, earlier_errors, earlier_n) -> np.ndarray:
    """Positive when the window's error rate is higher than the earlier one."""
    window_rate = window_errors / window_n
    earlier_rate = earlier_errors / earlier_n
    pooled = (window_errors + earlier_errors) / (window_n + earlier_n)
    ratio = (
        _log_likelihood(window_errors, window_n, window_rate)
        + _log_likelihood(earlier_errors, earlier_n, earlier_rate)
        - _log_likelihood(window_errors, window_n, pooled)
        - _log_likelihood(earlier_errors, earlier_n, pooled)
    )
    return np.sign(window_rate - earlier_rate) * np.sqrt(np.maximum(2.0 * ratio, 0.0))


def threshold_for(expected_run_length: float, windows: int) -> float:
    """The standard normal's upper quantile for a false alarm every `expected_run_length`
    samples over `windows` windows (scipy.special's: scipy.stats took a starting Monitor 0.6 s
    to import)."""
    return float(-ndtri(1.0 / (expected_run_length * windows)))


class ErrorRateDetector:
    def __init__(self, expected_run_length: float = 1e5, windows: Sequence[int] = WINDOWS):
        self.windows = tuple(sorted(windows))
        self.threshold = threshold_for(expected_run_length, len(self.windows))
        self._recent = np.zeros(0)  # the last max(windows) outcomes (1 = error)
        self._errors_before = 0.0  # errors older than `_recent`, since the start or last alarm
        self._n_before = 0
        self.samples = 0
        self.recent_error_rate = float("nan")

    def update(self, errors: np.ndarray) -> list[Alarm]:
        """Feeds outcomes (1 = wrong prediction, oldest first); returns the alarms they raised."""
        errors = np.asarray(errors, dtype=np.float64).ravel()
        alarms = []
        while errors.size:
            joined = np.concatenate([self._recent, errors])
            old = self._recent.size
            cumulative = np.concatenate([[0.0], np.cumsum(joined)])
            end = np.arange(old + 1, joined.size + 1)
            total_n = self._n_before + end  # samples since reset up to each new one
            total_errors = self._errors_before + cumulative[end]
            best = np.full(errors.size, -np.inf)
            best_window = np.zeros(errors.size, dtype=int)
            for w in self.windows:
                earlier_n = total_n - w
                valid = earlier_n >= MIN_EARLIER
                if not valid.any():
                    continue
                window_errors = cumulative[end] - cumulative[np.maximum(end - w, 0)]
                score = signed_root_lr(window_errors, w, total_errors - window_errors, np.maximum(earlier_n, 1))
                score[~valid] = -np.inf
                better = score > best
                best[better], best_window[better] = score[better], w
            over = np.flatnonzero(best > self.threshold)
            used = int(over[0]) + 1 if over.size else errors.size
            self.samples += used
            longest = self.windows[-1]
            tail = joined[: old + used][-longest:]
            self.recent_error_rate = float(tail.mean()) if tail.size else float("nan")
            if over.size:
                index = over[0]
                alarms.append(
                    Alarm(self.samples, ("error_rate",), STATISTIC, float(best[index]), self.threshold,
                          int(best_window[index]))
                )  # fmt: skip
                self._recent, self._errors_before, self._n_before = np.zeros(0), 0.0, 0
            else:
                kept = joined[-longest:]
                dropped = joined[: joined.size - kept.size]
                self._errors_before += float(dropped.sum())
                self._n_before += dropped.size
                self._recent = kept
            errors = errors[used:]
        return alarms
