"""The feedback tap: every inference is offered to a bounded buffer that a background task
drains into a pluggable sink (the Monitor, once connected). Offering never waits: when the
buffer is full the record is dropped and counted, so inference never waits for monitoring.
Records the sink could not take (the Monitor restarting) go back to the front of the buffer
and are sent again at the next drain, so an outage shorter than the buffer loses nothing (at
100 requests/s the default 10,000 records hold 100 s). The buffer is bounded in bytes too, and
one send in bytes: a record larger than a send keeps its first rows only (a sample of a big
request, enough for drift) and counts as dropped; a batch the sink refuses for good (too large,
malformed) is dropped and counted instead of being sent again forever."""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from dataclasses import dataclass
from typing import Protocol

import grpc
import numpy as np
from prometheus_client import Counter

log = logging.getLogger(__name__)


@dataclass(slots=True)
class FeedbackRecord:
    request_id: str
    model: str
    version: str
    inputs: dict[str, np.ndarray]
    outputs: dict[str, np.ndarray]
    time_ns: int
    size: int = 0  # bytes of its tensors
    # A trial's challenger, which answered the same rows beside `version` (none: "").
    shadow_version: str = ""
    shadow_outputs: dict[str, np.ndarray] | None = None


def version_number(version: str) -> int:
    """A record's model version as the Monitor numbers it (0 for a model loaded by uri, named otherwise)."""
    return int(version) if str(version).isdigit() else 0


def tensor_bytes(arrays: dict[str, np.ndarray]) -> int:
    """What the arrays take in a message: a BYTES tensor's strings by their length (its
    numpy array holds only pointers to them)."""
    total = 0
    for array in map(np.asarray, arrays.values()):
        if array.dtype == object:
            total += sum(len(x) for x in array.ravel()) + 4 * array.size
        else:
            total += array.nbytes
    return total


def record_bytes(request_id: str, inputs: dict[str, np.ndarray], outputs: dict[str, np.ndarray]) -> int:
    """A record's size in its message: its tensors and, once per row, its request id."""
    rows = np.shape(next(iter(inputs.values())))[:1] if inputs else ()
    return tensor_bytes(inputs) + tensor_bytes(outputs) + (len(request_id) + 12) * (rows[0] if rows else 1)


def first_rows(arrays: dict[str, np.ndarray], rows: int) -> dict[str, np.ndarray]:
    """Copies of the arrays' first rows (a copy: a view would keep the whole array alive)."""
    return {name: np.array(a[:rows]) if np.ndim(a) else a for name, a in arrays.items()}


def refused_for_good(err: Exception) -> bool:
    """The sink will refuse this batch however often it is sent (a gRPC status that is no outage)."""
    code = getattr(err, "code", None)
    code = code() if callable(code) else code
    return code in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.RESOURCE_EXHAUSTED)


class FeedbackSink(Protocol):
    async def send(self, records: list[FeedbackRecord], dropped: int) -> None: ...


class FeedbackTap:
    def __init__(
        self,
        capacity: int,
        sink: FeedbackSink | None,
        batch_size: int = 512,
        interval: float = 0.2,
        dropped_metric: Counter | None = None,
        budget_bytes: int = 64 * 2**20,
        batch_bytes: int = 8 * 2**20,
    ):
        """`sink`: None when there is no Monitor to send to: then nothing is kept (no copy of a
        big request's rows, nothing counted as dropped). `budget_bytes`: of all buffered
        records; `batch_bytes`: of one send (far below the Monitor's 64 MiB message limit)."""
        self._buffer: collections.deque[FeedbackRecord] = collections.deque()
        self._capacity = capacity
        self._budget = budget_bytes
        self._batch_bytes = batch_bytes
        self._bytes = 0  # buffered
        self._sink = sink
        self._batch_size = batch_size
        self._interval = interval
        self.dropped = 0
        self._dropped_unreported = 0
        self.sent = 0
        self._task: asyncio.Task | None = None
        self._dropped_metric = dropped_metric
        self._failing = False  # the last send failed (logged once per outage)

    def _drop(self, count: int) -> None:
        self.dropped += count
        if self._dropped_metric is not None:
            self._dropped_metric.inc(count)

    def offer(
        self, request_id: str, model: str, version: str, inputs, outputs, shadow_version: str = "",
        shadow_outputs: dict[str, np.ndarray] | None = None,
    ) -> None:  # fmt: skip
        """A served request's record; a trial's `shadow_version` and its `shadow_outputs` on
        the same rows beside it."""
        if self._sink is None:
            return
        shadow = shadow_outputs or {}
        size = record_bytes(request_id, inputs, outputs) + tensor_bytes(shadow)
        if size > self._batch_bytes:  # a big request: a sample of its rows
            rows = np.shape(next(iter(inputs.values())))[:1] if inputs else ()
            keep = rows[0] * self._batch_bytes // size if rows else 0
            self._drop(1)
            self._dropped_unreported += 1
            if not keep:
                return
            inputs, outputs, shadow = first_rows(inputs, keep), first_rows(outputs, keep), first_rows(shadow, keep)
            size = record_bytes(request_id, inputs, outputs) + tensor_bytes(shadow)
        if len(self._buffer) >= self._capacity or self._bytes + size > self._budget:
            self._drop(1)
            self._dropped_unreported += 1
            return
        self._buffer.append(
            FeedbackRecord(
                request_id, model, version, inputs, outputs, time.time_ns(), size, shadow_version, shadow or None
            )
        )
        self._bytes += size

    @property
    def active(self) -> bool:
        """Whether records go anywhere (a runtime without a Monitor keeps none)."""
        return self._sink is not None

    @property
    def pending(self) -> int:
        return len(self._buffer)

    def start(self) -> None:
        if self._sink is None:
            return
        self._task = asyncio.get_running_loop().create_task(self._drain_forever())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self._drain_once()
        self._drop(len(self._buffer))  # the sink is still away: what is left goes with the process

    async def _drain_once(self) -> None:
        sink = self._sink
        if sink is None:  # nothing was buffered
            return
        while self._buffer:
            records: list[FeedbackRecord] = []
            size = 0
            while self._buffer and len(records) < self._batch_size:
                if records and size + self._buffer[0].size > self._batch_bytes:
                    break
                records.append(self._buffer.popleft())
                size += records[-1].size
            self._bytes -= size
            dropped, self._dropped_unreported = self._dropped_unreported, 0
            try:
                await sink.send(records, dropped)
            except Exception as err:  # monitoring must never take inference down
                if refused_for_good(err):
                    log.warning("feedback sink refused %d records for good; dropped: %s", len(records), err)
                    self._drop(len(records))
                    self._dropped_unreported += dropped + len(records)
                    continue
                self._put_back(records, dropped)
                if not self._failing:
                    log.warning("feedback sink failed; %d records kept to send again: %s", len(self._buffer), err)
                self._failing = True
                return
            self.sent += len(records)
            if self._failing:
                log.info("feedback sink is back")
            self._failing = False

    def _put_back(self, records: list[FeedbackRecord], dropped: int) -> None:
        """In front of what came meanwhile, in order; beyond the capacity the oldest go."""
        self._buffer.extendleft(reversed(records))
        self._bytes += sum(r.size for r in records)
        self._dropped_unreported += dropped
        excess = len(self._buffer) - self._capacity
        for _ in range(max(0, excess)):
            self._bytes -= self._buffer.popleft().size
        if excess > 0:
            self._drop(excess)
            self._dropped_unreported += excess

    async def _drain_forever(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            await self._drain_once()
