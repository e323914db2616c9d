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
        assert store.label_count("d-1") == (11, 1)  # the newest ten unmatched, and its matched one
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


def test_a_flood_of_labels_for_requests_nobody_made_keeps_the_matched_ones_and_their_numbers(tmp_path):
    """A lease holder of a shared deployment sent 60,000 labels for made-up ids: they pushed the
    owner's matched labels out and the next match was numbered 1 again, which retraining series
    count on. Unmatched labels now only ever push out unmatched ones."""
    store = MonitorStore(tmp_path / "monitor.sqlite3", keep_predictions=40)
    try:
        ids = [f"alice/r{i}" for i in range(30)]
        store.add_predictions("d-1", ids, 1, np.zeros((30, 4)), ["0"] * 30)
        store.add_labels("d-1", [(rid, "0") for rid in ids[:20]])
        store.add_labels("d-1", [(f"bob/ghost-{i}", "1") for i in range(500)])
        labels, matched = store.label_count("d-1")
        assert matched == 20 and labels <= 20 + 40 + 40 // 8
        assert [x.number for x in store.labeled_since("d-1", 0)] == list(range(1, 21))
        newly, _ = store.add_labels("d-1", [(ids[20], "0")])
        assert [x.number for x in newly] == [21]
    finally:
        store.close()


def test_a_rounds_labels_are_those_of_the_models_owner(tmp_path):
    """A lease holder's requests on the owner's shared deployment (recorded as "bob/...") never
    reach a version registered as the owner's: its rows were found in the reference data of a
    retrained version anyone with the model could download."""
    from mlaas.services.label_store import made_by

    store = MonitorStore(tmp_path / "monitor.sqlite3")
    try:
        ids = ["alice/r1", "bob/r1", "alice/r2", "bob-x/r3"]
        store.add_predictions("d-1", ids, 1, np.zeros((4, 4)), ["0"] * 4)
        store.add_labels("d-1", [(rid, "1") for rid in ids])
        labeled = store.labeled_since("d-1", 0)
        assert [x.request_id for x in made_by(labeled, "alice")] == ["alice/r1", "alice/r2"]
        assert [x.request_id for x in made_by(labeled, "bob")] == ["bob/r1"]
        assert made_by(labeled, "") == labeled  # no tenancy: one user
    finally:
        store.close()
