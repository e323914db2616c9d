"""A STRICT deployment's labels stay on its node: its runtimes keep their predictions (the first
input's rows, the first output, the caller's request ids) and the labels reported to them
(NodeLabelsService) in a LabelStore on the node, one SQLite file its workers share, bounded like
the Monitor's. The Monitor never receives a row, a prediction or a label: only, per window of
`window` labels matched here, how many predictions were wrong (LabelSummary), from which it
watches performance drift as it does for OPEN deployments."""

from __future__ import annotations

import threading
from collections import defaultdict

import numpy as np

from inference_svc.feedback import FeedbackRecord
from inference_svc.monitor_sink import MonitorConnection, row_ids
from mlaas.services.label_store import Labeled, LabelStore
from mlaas.services.outcomes import Outcomes
from mlaas.v1 import monitor_pb2

M = monitor_pb2


def is_class_label(prediction: str) -> bool:
    """A classifier's label is an integer or a name; a regression's value a float's text."""
    try:
        int(prediction)
    except ValueError:
        try:
            float(prediction)
        except ValueError:
            return True
        return False
    return True


class NodeLabels:
    def __init__(self, store: LabelStore, deployment_id: str, model_name: str, window: int = 32):
        self._store = store
        self._deployment = deployment_id
        self._model = model_name
        self._window = window
        self._lock = threading.Lock()  # the label rpc and the feedback drain run on threads
        self._outcomes: dict[int, Outcomes] = {}
        self._open: dict[int, tuple[int, list[float]]] = {}  # version -> (first label, outcomes so far)
        self._ready: list[monitor_pb2.LabelSummary] = []

    def add_predictions(self, records: list[FeedbackRecord]) -> None:
        """Keeps answered requests' rows (blocking: run it on a thread); counts the labels that
        were waiting for them."""
        for record in records:
            if not record.inputs or not record.outputs:
                continue
            rows = next(iter(record.inputs.values()))
            inputs = np.asarray(rows, dtype=np.float64).reshape(rows.shape[0], -1)
            predictions = np.asarray(next(iter(record.outputs.values()))).reshape(rows.shape[0], -1)[:, 0]
            version = int(record.version) if str(record.version).isdigit() else 0
            ids = row_ids(record.request_id, inputs.shape[0])
            self._count(
                self._store.add_predictions(self._deployment, ids, version, inputs, [str(p) for p in predictions])
            )

    def add_labels(self, pairs: list[tuple[str, str]]) -> tuple[int, int]:
        """Keeps labels (durable before it returns: run it on a thread) and counts those whose
        prediction is here; (accepted, waiting for their prediction)."""
        matched, waiting = self._store.add_labels(self._deployment, pairs)
        self._count(matched)
        return len(pairs), waiting

    def _count(self, matched: list[Labeled]) -> None:
        by_version: dict[int, list[Labeled]] = defaultdict(list)
        for labeled in matched:
            by_version[labeled.model_version].append(labeled)
        with self._lock:
            for version, group in by_version.items():
                outcomes = self._outcomes.setdefault(version, Outcomes(is_class_label(group[0].prediction)))
                first, seen = self._open.get(version, (group[0].number, []))
                seen = seen + outcomes.errors(group).tolist()
                while len(seen) >= self._window:
                    window, seen = seen[: self._window], seen[self._window :]
                    self._ready.append(M.LabelSummary(
                        model_version=version, first_label=first, labels=len(window), errors=int(sum(window)),
                    ))  # fmt: skip
                    first += len(window)
                self._open[version] = (first, seen)

    def close(self) -> None:
        self._store.close()

    async def flush(self, monitor: MonitorConnection) -> None:
        """Sends the windows counted so far; kept to send again if the Monitor is away."""
        with self._lock:
            ready, self._ready = self._ready, []
        if not ready:
            return
        message = M.IngestFeedbackRequest(deployment_id=self._deployment, model_name=self._model, label_summaries=ready)
        try:
            await monitor.ingest(message)
        except Exception:
            with self._lock:
                self._ready = ready + self._ready
            raise
