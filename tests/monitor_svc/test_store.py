"""The Monitor's store keeps labels bounded: a label whose prediction never comes goes after a
while, and a deployment keeps no more labels than predictions (100k labels for unknown ids once
went in in 0.7 s and stayed forever)."""

from __future__ import annotations

import numpy as np

from monitor_svc.store import MonitorStore


def test_labels_are_bounded_by_age_and_by_count(tmp_path):
    store = MonitorStore(tmp_path / "monitor.sqlite3", keep_predictions=10, unmatched_label_seconds=0.0)
    try:
        store.add_predictions("d-1", ["r-1"], 1, np.zeros((1, 4)), ["0"])
        _, unmatched = store.add_labels("d-1", [(f"ghost-{i}", "1") for i in range(25)] + [("r-1", "0")])
        assert unmatched == 25
        assert store.label_count("d-1") == (10, 1)  # the newest ten, its matched one among them
        store.add_labels("d-1", [("late", "1")])  # a moment later the unmatched ones are past their time
        assert store.label_count("d-1") == (2, 1)
        assert store.label_count("d-2") == (0, 0)  # per deployment
    finally:
        store.close()


def test_retention_keeps_the_newest_and_at_most_an_eighth_more_one_row_at_a_time(tmp_path):
    """The cut is found once per eighth of the window a deployment adds, not per call (finding it
    walks the window: at the default 50,000 every label call took 56 ms, now about 1 ms)."""
    store = MonitorStore(tmp_path / "monitor.sqlite3", keep_predictions=80)
    try:
        store.add_predictions("d-2", [f"q{i}" for i in range(5)], 1, np.zeros((5, 4)), ["0"] * 5)
        for i in range(300):
            store.add_predictions("d-1", [f"r{i}"], 1, np.zeros((1, 4)), ["0"])
            store.add_labels("d-1", [(f"r{i}", "0")])
        labels, matched = store.label_count("d-1")
        assert 80 <= labels <= 90 and matched == labels
        kept = store.labeled_since("d-1", 0)  # each a label joined with its prediction
        assert 80 <= len(kept) <= 90 and kept[-1].request_id == "r299"
        assert {x.request_id for x in kept} == {f"r{i}" for i in range(300 - len(kept), 300)}  # the newest
        assert len(store.add_labels("d-2", [(f"q{i}", "0") for i in range(5)])[0]) == 5  # not the other's
    finally:
        store.close()
