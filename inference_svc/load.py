"""A replica's load, counted by each of its worker processes in memory they share (made by the
runtime's parent before it spawns them, like cores.LongCalls), so that whichever worker answers
RuntimeService.GetLoad answers for the whole replica. Each worker writes its own slot only.

Everything but the requests in flight now is a total since the start: the scheduler takes the
difference of two readings to see the load between them (the mean in flight, the 99th
percentile latency from the histogram), so no reading depends on who read before. The seconds
spent include those of the requests still in flight (each slot keeps the sum of their arrival
times, on the system-wide monotonic clock), so a backlog shows at once, not when it is answered."""

from __future__ import annotations

import bisect
import multiprocessing
import time
from collections.abc import Callable
from typing import TypeVar

from mlaas.v1 import runtime_pb2

# Upper bounds of the latency histogram's buckets, in seconds: from 0.1 ms up by half each
# time to about 40 s, so a percentile read from it is within 25% of the true one.
LATENCY_BOUNDS = tuple(0.0001 * 1.5**k for k in range(32))
_IN_FLIGHT, _ANSWERED, _BUSY, _ARRIVALS, _COUNTS = 0, 1, 2, 3, 4  # _BUSY: of requests ended
_WIDTH = _COUNTS + len(LATENCY_BOUNDS) + 1  # one count over the last bound

T = TypeVar("T")


class ReplicaLoad:
    def __init__(self, workers: int = 1):
        # Unlocked: a slot has one writer, and an aligned 8-byte store is never seen half-made.
        self._values = multiprocessing.get_context("spawn").RawArray("d", max(1, workers) * _WIDTH)
        self._workers = max(1, workers)

    def worker(self, index: int) -> WorkerLoad:
        return WorkerLoad(self._values, min(index, self._workers - 1) * _WIDTH)

    def reading(self) -> runtime_pb2.GetLoadResponse:
        """Every worker's counters, summed."""
        now = time.perf_counter()
        values = self._values[:]
        sums = [sum(values[w * _WIDTH + i] for w in range(self._workers)) for i in range(_WIDTH)]
        busy = sums[_BUSY] + max(0.0, sums[_IN_FLIGHT] * now - sums[_ARRIVALS])  # the ended and the running
        return runtime_pb2.GetLoadResponse(
            in_flight=max(0, round(sums[_IN_FLIGHT])), answered=round(sums[_ANSWERED]), busy_seconds=busy,
            latency_bounds_seconds=LATENCY_BOUNDS, latency_counts=[round(c) for c in sums[_COUNTS:]],
        )  # fmt: skip


class WorkerLoad:
    """One worker's slot: a request is counted in as it arrives and out as it ends, with how long
    it took; the latency histogram takes the answered ones only (refusals, which take no time,
    would make a latency target look met)."""

    def __init__(self, values, offset: int):
        self._values = values
        self._offset = offset

    def begin(self, started: float) -> None:
        """A request arrived at `started` (perf_counter)."""
        values, at = self._values, self._offset
        values[at + _IN_FLIGHT] += 1
        values[at + _ARRIVALS] += started

    def end(self, started: float, answered: bool) -> None:
        values, at = self._values, self._offset
        seconds = time.perf_counter() - started
        values[at + _IN_FLIGHT] -= 1
        values[at + _ARRIVALS] -= started
        values[at + _BUSY] += seconds
        if answered:
            values[at + _ANSWERED] += 1
            values[at + _COUNTS + _bucket(seconds)] += 1

    def ending(self, deliver: Callable[[T], None], started: float) -> Callable[[T], None]:
        """`deliver`, counting the request out first (answered unless its outcome is an error)."""

        def counted(outcome: T) -> None:
            self.end(started, answered=not isinstance(outcome, BaseException))
            deliver(outcome)

        return counted


def _bucket(seconds: float) -> int:
    """The first bucket whose bound is at least `seconds` (the last: over every bound)."""
    return bisect.bisect_left(LATENCY_BOUNDS, seconds)
