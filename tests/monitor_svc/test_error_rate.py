"""The performance detector on the error stream of a model: it sees a concept change and not
the null stream (fixed seeds), and a model getting better is no alarm."""

from __future__ import annotations

import numpy as np

from mlaas.demos.scenarios import sea_error_streams
from monitor_svc.detectors.error_rate import ErrorRateDetector


def test_the_error_rate_detector_sees_the_sea_concept_change_and_not_the_null():
    streams = sea_error_streams(3)
    for seed in range(3):
        assert ErrorRateDetector(30_000).update(streams[f"sea_null_{seed}"]) == []
        alarms = ErrorRateDetector(30_000).update(streams[f"sea_drift_{seed}"])
        assert alarms and 2_000 < alarms[0].sample < 2_600, [a.sample for a in alarms]
        assert alarms[0].features == ("error_rate",) and alarms[0].window >= 32


def test_a_better_error_rate_is_no_alarm():
    rng = np.random.default_rng(0)
    improving = np.concatenate([rng.random(3000) < 0.3, rng.random(3000) < 0.05]).astype(float)
    assert ErrorRateDetector(30_000).update(improving) == []
