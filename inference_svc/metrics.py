"""Prometheus metrics of one runtime worker. With several workers, prometheus_client's
multiprocess mode (PROMETHEUS_MULTIPROC_DIR, set by the parent) sums them on one endpoint.

Each update costs several microseconds (in multiprocess mode, a write to a memory-mapped file),
so the request path only appends observations to lists that a background task writes every
half second, and nothing is counted twice: request counts by outcome are the latency histogram's
`_count`, rows are the batch histogram's `_sum`, and the queue gauge is refreshed once a second."""

from __future__ import annotations

import asyncio

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096)


class BufferedHistogram:
    """One labelled histogram whose observations wait in a list until `flush`."""

    __slots__ = ("_histogram", "_pending")

    def __init__(self, histogram):
        self._histogram = histogram
        self._pending: list[float] = []

    def observe(self, value: float) -> None:
        self._pending.append(value)

    def flush(self) -> None:
        pending, self._pending = self._pending, []
        for value in pending:
            self._histogram.observe(value)


class RuntimeMetrics:
    def __init__(self, registry: CollectorRegistry | None = None):
        registry = registry or CollectorRegistry()
        self.latency = Histogram(
            "mlaas_inference_request_seconds", "Time from request to response, by model, kind and outcome",
            ["model", "kind", "status"], buckets=LATENCY_BUCKETS, registry=registry,
        )  # fmt: skip
        self.queue_delay = Histogram(
            "mlaas_inference_queue_seconds", "Time a request waited for its batch",
            ["model"], buckets=LATENCY_BUCKETS, registry=registry,
        )  # fmt: skip
        self.batch_size = Histogram(
            "mlaas_inference_batch_rows", "Rows per ONNX Runtime call", ["model"], buckets=BATCH_BUCKETS,
            registry=registry,
        )  # fmt: skip
        self.queued_rows = Gauge(
            "mlaas_inference_queued_rows", "Rows waiting for a batch", ["model"], registry=registry,
            multiprocess_mode="livesum",
        )  # fmt: skip
        self.feedback_dropped = Counter(
            "mlaas_feedback_dropped", "Feedback records dropped because the buffer was full", registry=registry
        )
        self._buffers: dict[int, BufferedHistogram] = {}  # by id of the labelled histogram

    def buffered(self, histogram) -> BufferedHistogram:
        """The request-path handle on a labelled histogram (`metric.labels(...)`)."""
        buffer = self._buffers.get(id(histogram))
        if buffer is None:
            buffer = self._buffers[id(histogram)] = BufferedHistogram(histogram)
        return buffer

    def flush(self) -> None:
        for buffer in self._buffers.values():
            buffer.flush()

    async def flush_forever(self, interval: float = 0.5) -> None:
        while True:
            await asyncio.sleep(interval)
            self.flush()
