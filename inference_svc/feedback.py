"""The feedback tap: every inference is offered to a bounded buffer that a background task
drains into a pluggable sink (the Monitor, once connected). Offering never waits: when the
buffer is full the record is dropped and counted, so inference never waits for monitoring.
Records the sink could not take (the Monitor restarting) go back to the front of the buffer
and are sent again at the next drain, so an outage shorter than the buffer loses nothing (at
100 requests/s the default 10,000 records hold 100 s)."""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from dataclasses import dataclass
from typing import Protocol

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


class FeedbackSink(Protocol):
    async def send(self, records: list[FeedbackRecord], dropped: int) -> None: ...


class DiscardSink:
    """Used until a Monitor is configured."""

    async def send(self, records: list[FeedbackRecord], dropped: int) -> None:
        return None


class FeedbackTap:
    def __init__(
        self,
        capacity: int,
        sink: FeedbackSink,
        batch_size: int = 512,
        interval: float = 0.2,
        dropped_metric: Counter | None = None,
    ):
        self._buffer: collections.deque[FeedbackRecord] = collections.deque()
        self._capacity = capacity
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

    def offer(self, request_id: str, model: str, version: str, inputs, outputs) -> None:
        if len(self._buffer) >= self._capacity:
            self._drop(1)
            self._dropped_unreported += 1
            return
        self._buffer.append(FeedbackRecord(request_id, model, version, inputs, outputs, time.time_ns()))

    @property
    def pending(self) -> int:
        return len(self._buffer)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._drain_forever())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self._drain_once()
        self._drop(len(self._buffer))  # the sink is still away: what is left goes with the process

    async def _drain_once(self) -> None:
        while self._buffer:
            take = min(self._batch_size, len(self._buffer))
            records = [self._buffer.popleft() for _ in range(take)]
            dropped, self._dropped_unreported = self._dropped_unreported, 0
            try:
                await self._sink.send(records, dropped)
            except Exception as err:  # monitoring must never take inference down
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
        self._dropped_unreported += dropped
        excess = len(self._buffer) - self._capacity
        for _ in range(max(0, excess)):
            self._buffer.popleft()
        if excess > 0:
            self._drop(excess)
            self._dropped_unreported += excess

    async def _drain_forever(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            await self._drain_once()
