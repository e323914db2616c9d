"""For STRICT deployments, raw inputs never leave the runtime: this sink turns inference records
into per-window summaries (WindowSummary: per feature, counts over fixed bin edges, for the
inputs and the first output) and sends only those to the Monitor, which still
tests them against the reference data. The bin edges are the Monitor's, asked for each model
version before its first window: the deciles of the version's registered reference data, so that
the edges tell nothing of the node's rows (their own quantiles would, and for a discrete feature
its very values)."""

from __future__ import annotations

import asyncio
import logging

import numpy as np
from google.protobuf.timestamp_pb2 import Timestamp

from inference_svc.feedback import FeedbackRecord, version_number
from inference_svc.monitor_sink import MonitorConnection
from inference_svc.node_labels import NodeLabels
from mlaas.v1 import monitor_pb2

log = logging.getLogger(__name__)

M = monitor_pb2


def _summaries(rows: np.ndarray, edges: list[np.ndarray]) -> list[monitor_pb2.FeatureSummary]:
    """Per feature, the counts over the Monitor's edges and nothing else of the rows."""
    found = []
    for j, cut in enumerate(edges):
        column = rows[:, j]
        counts = np.bincount(np.searchsorted(cut, column, side="right"), minlength=cut.size + 1)
        found.append(M.FeatureSummary(feature_index=j, bin_edges=cut.tolist(), counts=counts.tolist(), n=column.size))
    return found


class SummarySink:
    """`labels`: where the records' predictions are kept on the node, for the labels reported
    there (node_labels.py)."""

    def __init__(self, monitor: MonitorConnection, deployment_id: str, labels: NodeLabels, window: int = 256):
        self._monitor = monitor
        self._labels = labels
        self._deployment_id = deployment_id
        self._window = window
        self._inputs: list[np.ndarray] = []
        self._outputs: list[np.ndarray] = []
        self._edges: dict[int, tuple[list[np.ndarray], list[np.ndarray]]] = {}  # by model version
        self._started = Timestamp()
        self._model, self._version = "", 0

    async def send(self, records: list[FeedbackRecord], dropped: int) -> None:
        await asyncio.to_thread(self._labels.add_predictions, records)  # kept again if resent: one row per id
        try:  # the counts of labels that were waiting for these predictions; never in the way of the rest
            await self._labels.flush(self._monitor)
        except Exception as err:
            log.warning("label counts kept to send again: %s", err)
        summed = [r for r in records if r.inputs and r.outputs]
        for record in summed:  # before a row is kept: the records come again if the Monitor cannot say now
            await self._edges_of(record.model, version_number(record.version))
        for record in summed:
            if not self._inputs:
                self._started.GetCurrentTime()
            rows = next(iter(record.inputs.values()))
            self._inputs.append(np.asarray(rows, dtype=np.float64).reshape(rows.shape[0], -1))
            self._outputs.append(np.asarray(next(iter(record.outputs.values())), dtype=np.float64).reshape(-1, 1))
            self._model, self._version = record.model, version_number(record.version)
        if sum(len(x) for x in self._inputs) < self._window:
            return
        edges = self._edges[self._version]
        inputs, outputs = np.vstack(self._inputs), np.vstack(self._outputs)[:, :1]
        self._inputs, self._outputs = [], []
        end = Timestamp()
        end.GetCurrentTime()
        summary = M.WindowSummary(
            model_version=self._version, window_start=self._started, window_end=end,
            features=_summaries(inputs, edges[0]), outputs=_summaries(outputs, edges[1]),
        )  # fmt: skip
        message = M.IngestFeedbackRequest(
            deployment_id=self._deployment_id, model_name=self._model, summaries=[summary], dropped=dropped
        )
        await self._monitor.ingest(message)

    async def _edges_of(self, model: str, version: int) -> None:
        """The Monitor's bin edges for `version`, asked once."""
        if version in self._edges:
            return
        asked = M.IngestFeedbackRequest(deployment_id=self._deployment_id, model_name=model, edges_for_version=version)
        given = (await self._monitor.ingest(asked)).summary_edges
        self._edges[version] = (
            [np.asarray(f.edges) for f in given.features],
            [np.asarray(o.edges) for o in given.outputs],
        )
