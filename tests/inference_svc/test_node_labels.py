"""A STRICT deployment's label counts (inference_svc/node_labels.py) on a real SQLite node store
shared by two NodeLabels, as by two workers or by the old and new runtimes of a rollout; the
Monitor is a recorder that can be made to fail."""

from __future__ import annotations

import asyncio

import grpc
import numpy as np
import pytest

from inference_svc import node_labels
from inference_svc.feedback import FeedbackRecord
from inference_svc.node_labels import NodeLabels, NodeStore
from mlaas.errors import InvalidArgument, Unavailable


class Monitor:
    def __init__(self):
        self.sent: list = []
        self.failure: Exception | None = None

    async def ingest(self, message) -> None:
        if self.failure is not None:
            raise self.failure
        self.sent.extend(message.label_summaries)


def record(request_id: str, version: int, label: int) -> FeedbackRecord:
    return FeedbackRecord(request_id, "m", str(version), {"X": np.ones((1, 2))}, {"label": np.array([label])}, 0)


@pytest.fixture
def node(tmp_path):
    store = NodeStore(tmp_path / "node.sqlite3", keep_predictions=10_000)
    yield store
    store.close()


def predict_and_label(labels: NodeLabels, ids: range, version: int, wrong_every: int = 0) -> None:
    labels.add_predictions([record(f"r{i}", version, 1) for i in ids])
    labels.add_labels([(f"r{i}", "0" if wrong_every and i % wrong_every == 0 else "1") for i in ids])


def test_windows_are_cut_from_the_store_so_two_workers_partial_windows_add_up(node):
    """Each worker once kept its own partial window in memory: with two, up to 62 labels were
    never counted, and counts died with the process."""
    first, second, monitor = (
        NodeLabels(node, "d-1", "m", 1, window=4),
        NodeLabels(node, "d-1", "m", 1, window=4),
        Monitor(),
    )
    predict_and_label(first, range(0, 3), 1)
    predict_and_label(second, range(3, 6), 1, wrong_every=5)
    asyncio.run(first.flush(monitor))
    assert [(s.labels, s.errors) for s in monitor.sent] == [(4, 0)]  # r0-r3; r4, r5 wait for r6, r7
    predict_and_label(second, range(6, 8), 1)
    asyncio.run(second.flush(monitor))  # another worker (or a restarted one) goes on from the mark
    assert [(s.labels, s.errors) for s in monitor.sent] == [(4, 0), (4, 1)]
    asyncio.run(first.flush(monitor))
    assert len(monitor.sent) == 2  # nothing is sent twice


def test_after_a_rollout_the_old_versions_labels_are_kept_but_not_counted(node):
    """The new runtime's credential allows its own version only: a window of the old one was
    refused for good and, put back in front, blocked every later message."""
    old, new, monitor = NodeLabels(node, "d-1", "m", 1, window=4), NodeLabels(node, "d-1", "m", 2, window=4), Monitor()
    old.add_predictions([record(f"v1-{i}", 1, 1) for i in range(4)])
    new.add_predictions([record(f"v2-{i}", 2, 1) for i in range(4)])
    new.add_labels([(f"v1-{i}", "1") for i in range(4)] + [(f"v2-{i}", "0") for i in range(4)])
    asyncio.run(new.flush(monitor))
    assert [(s.model_version, s.labels, s.errors) for s in monitor.sent] == [(2, 4, 4)]
    assert node.label_count("d-1") == (8, 8)


def test_a_worker_not_told_of_a_swap_yet_neither_counts_nor_skips_the_new_versions_labels(node):
    """A swap reaches a runtime's workers one after another, and an old runtime's workers run on
    during a rollout: one of them that flushed (each does, every second) took the new version's
    labels for another version's and skipped them, and they were never counted."""
    (told, stale), monitor = (NodeLabels(node, "d-1", "m", 1, window=4) for _ in range(2)), Monitor()
    told.serve(2)
    told.add_predictions([record(f"v2-{i}", 2, 1) for i in range(8)])
    told.add_labels([(f"v2-{i}", "1") for i in range(8)])
    asyncio.run(stale.flush(monitor))
    assert monitor.sent == []
    asyncio.run(told.flush(monitor))
    assert [(s.model_version, s.labels) for s in monitor.sent] == [(2, 4), (2, 4)]  # none skipped
    stale.serve(2)  # told at last
    asyncio.run(stale.flush(monitor))
    assert len(monitor.sent) == 2  # and nothing counted twice


def test_counts_the_monitor_could_not_take_are_sent_later_and_refused_ones_are_skipped(node):
    labels, monitor = NodeLabels(node, "d-1", "m", 1, window=2), Monitor()
    predict_and_label(labels, range(2), 1)
    monitor.failure = Unavailable("restarting")
    with pytest.raises(Unavailable):
        asyncio.run(labels.flush(monitor))
    monitor.failure = None
    asyncio.run(labels.flush(monitor))
    assert [s.labels for s in monitor.sent] == [2]  # kept, then sent
    predict_and_label(labels, range(2, 4), 1)
    monitor.failure = InvalidArgument("feedback of version(s) [1] does not come from deployment d-1")
    asyncio.run(labels.flush(monitor))  # refused for good: logged and skipped, nothing raised
    monitor.failure = None
    predict_and_label(labels, range(4, 6), 1)
    asyncio.run(labels.flush(monitor))
    assert [s.first_label for s in monitor.sent] == [1, 5]  # 3-4 skipped, never blocking the rest


def test_one_sender_at_a_time(node):
    labels = NodeLabels(node, "d-1", "m", 1, window=2)
    assert node.claim("d-1", 1) == 0
    predict_and_label(labels, range(2), 1)
    monitor = Monitor()
    asyncio.run(labels.flush(monitor))  # another sender holds the claim: nothing sent
    assert monitor.sent == []
    node.release("d-1", None)
    asyncio.run(labels.flush(monitor))
    assert [s.labels for s in monitor.sent] == [2]


def test_counts_the_request_path_left_go_without_more_traffic(node, monkeypatch):
    """A label report's flush skips when another sender holds the claim, and sends one share of
    windows: the rest waited for the next request or label, which may never come (a federation's
    site stayed 16 labels short of taking part)."""
    monkeypatch.setattr(node_labels, "FLUSH_SECONDS", 0.01)
    labels, monitor = NodeLabels(node, "d-1", "m", 1, window=2, windows_per_send=2), Monitor()
    predict_and_label(labels, range(10), 1)
    assert node.claim("d-1", 1) == 0  # the request path's flush would skip now

    async def left_alone() -> None:
        sender = asyncio.create_task(labels.flush_forever(monitor))
        node.release("d-1", None)
        try:
            async with asyncio.timeout(10):
                while len(monitor.sent) < 5:
                    await asyncio.sleep(0.01)
        finally:
            sender.cancel()

    asyncio.run(left_alone())
    assert [s.first_label for s in monitor.sent] == [1, 3, 5, 7, 9]  # all, once each, in order


def test_a_refusal_for_good_is_recognised_from_a_grpc_status():
    from inference_svc.feedback import refused_for_good

    class Refused(grpc.RpcError):
        def code(self):
            return grpc.StatusCode.INVALID_ARGUMENT

    assert refused_for_good(Refused()) and not refused_for_good(Unavailable("away"))


def test_a_trials_rows_are_counted_per_window_and_nothing_else_leaves(node):
    """During a trial the node keeps the challenger's answers beside the served version's, and
    each window of labels carries only counts: rows both answered, and those only one got right."""
    labels, monitor = NodeLabels(node, "d-1", "m", 1, window=4), Monitor()
    served = [record(f"r{i}", 1, 1) for i in range(8)]
    for i, r in enumerate(served[:6]):  # r6 and r7: the challenger's answer was skipped
        r.shadow_version, r.shadow_outputs = "2", {"label": np.array([0 if i < 4 else 1])}
    labels.add_predictions(served)
    labels.add_labels([(f"r{i}", "0" if i < 3 else "1") for i in range(8)])
    asyncio.run(labels.flush(monitor))
    first, second = monitor.sent
    # r0-r2: label 0, the challenger right, the served wrong; r3: label 1, the served right.
    assert (first.trial.challenger_version, first.trial.labels, first.trial.wins, first.trial.losses) == (2, 4, 3, 1)
    # r4, r5: both right (no win, no loss); r6, r7 were not answered by the challenger.
    assert (second.trial.labels, second.trial.wins, second.trial.losses) == (2, 0, 0)
    assert set(first.DESCRIPTOR.fields_by_name) == {"model_version", "first_label", "labels", "errors", "trial"}
