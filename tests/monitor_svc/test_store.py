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
