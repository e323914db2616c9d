"""Whether a labeled prediction was wrong, and which of two versions did better on a row
(mlaas/retraining/outcomes.py): the one rule the Monitor and a STRICT node both apply."""

from __future__ import annotations

import numpy as np

from mlaas.retraining.outcomes import REGRESSION_BASELINE, Outcomes, paired_gain, targets, usable
from mlaas.services.label_store import Labeled


def labeled(prediction: str, label: str, n: int = 0) -> Labeled:
    return Labeled(n, f"r-{n}", 1, np.zeros(2), prediction, label)


def test_labels_are_typed_as_the_models_outputs():
    assert targets(["1", "0", "2"], classification=True).dtype == np.int64
    assert targets(["cat", "1"], classification=True).tolist() == ["cat", "1"]  # a class named by text
    assert targets(["1.5", "2"], classification=False).tolist() == [1.5, 2.0]


def test_a_rows_gain_is_who_alone_was_right_or_how_much_closer_it_came():
    truth, champion, challenger = [1, 0, 1, 2], [1, 1, 0, 0], [1, 0, 1, 1]
    assert paired_gain(True, truth, champion, challenger).tolist() == [0, 1, 1, 0]
    assert paired_gain(True, ["1"], [1], [0]).tolist() == [-1]  # a label as text, an answer as a number
    assert paired_gain(False, [1.0, 1.0], [1.5, 0.0], [1.0, 0.5]).tolist() == [0.5, 0.5]


def test_a_regression_is_wrong_beyond_the_90th_percentile_of_its_first_residuals():
    outcomes = Outcomes(classification=False)
    baseline = [labeled(str(i / REGRESSION_BASELINE), "0", i) for i in range(REGRESSION_BASELINE - 1)]
    assert outcomes.errors(baseline).size == 0  # not yet a baseline: nothing counted
    first = outcomes.errors([labeled("0.0", "0")])
    assert first.size == REGRESSION_BASELINE and first.sum() == 20  # the baseline's top tenth
    assert outcomes.errors([labeled("0.1", "0"), labeled("5", "0")]).tolist() == [0.0, 1.0]
    assert Outcomes(classification=True).errors([labeled("1", "1"), labeled("1", "0")]).tolist() == [0.0, 1.0]


def test_a_regressions_labels_that_are_not_finite_numbers_neither_count_nor_poison_its_baseline():
    """A label reported as text ("nan", "inf", "abc") for a regression: left out, so the error
    limit stays a number and wrong predictions keep counting as wrong."""
    outcomes = Outcomes(classification=False)
    poison = [labeled("0.0", text, i) for i, text in enumerate(["nan", "inf", "-inf", "abc", ""])]
    baseline = [labeled("0.0", str(0.01 * i), 10 + i) for i in range(REGRESSION_BASELINE)]
    assert outcomes.errors(poison + baseline).size == REGRESSION_BASELINE
    assert outcomes.errors([labeled("0.0", "50.0"), labeled("0.0", "nan")]).tolist() == [1.0]
    assert usable(poison + baseline[:1], classification=False) == baseline[:1]
    assert usable(poison, classification=True) == poison  # a class may be named by any text
