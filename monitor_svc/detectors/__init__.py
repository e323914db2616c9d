"""Drift detectors: pure numpy, no service code, each calibrated to a false-alarm budget given
as the expected number of samples between false alarms on a stationary stream (its expected
run length, ERT)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Alarm:
    """A detected change. `sample` counts from the detector's start (1 = its first sample)."""

    sample: int
    features: tuple[str, ...]
    statistic: str
    value: float
    threshold: float
    window: int  # how many recent samples the decisive statistic covered
