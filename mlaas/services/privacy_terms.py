"""The differential-privacy terms of a STRICT deployment, the one rule both sides read: the
Monitor's policy states them (and skips rounds they would refuse), the scheduler checks and
charges every round on the node as it accepts it (scheduler_svc/privacy.py)."""

from __future__ import annotations

import math

# Beyond, an epsilon promises no privacy (above) or leaves nothing to learn (below).
MIN_EPSILON, MAX_EPSILON = 0.001, 100.0
MAX_BUDGET = MAX_EPSILON * 100


def epsilon_problem(name: str, value: float, most: float) -> str:
    """'' when `value` is 0 (off) or a sane epsilon up to `most`, else why not."""
    if math.isfinite(value) and (value == 0 or MIN_EPSILON <= value <= most):
        return ""
    return (
        f"{name} must be 0 (off) or between {MIN_EPSILON:g} and {most:g}: beyond, an epsilon promises no "
        "privacy (above) or leaves nothing to learn (below)"
    )


def budget_refusal(spent: float, epsilon: float, budget: float) -> str:
    """'' when a round spending `epsilon` fits the privacy budget after `spent`, else why not (a
    rounding error's worth over is not over)."""
    if spent + epsilon <= budget * (1 + 1e-9):
        return ""
    return (
        f"privacy budget: {spent:g} of {budget:g} spent, and a round spends {epsilon:g}; "
        "no more retraining with this budget"
    )
