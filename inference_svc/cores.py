"""How many of a runtime's worker processes are running a long ONNX Runtime call right now,
counted in memory they share. A long call takes every core (the wide session, batcher.py) only
while it is the only one: a lone stream of large requests, which lands on one worker, then uses
the whole machine, and many callers' large requests, spread over the workers, do not each ask
for every core (measured: that oversubscription cost 18% of unary rows/s)."""

from __future__ import annotations

import contextlib
import multiprocessing
from collections.abc import Iterator


class LongCalls:
    def __init__(self) -> None:
        # Made before the workers are spawned, and handed to each (a spawned child gets it only
        # through its Process arguments).
        self._running = multiprocessing.get_context("spawn").Value("i", 0)

    @contextlib.contextmanager
    def running(self) -> Iterator[bool]:
        """Counts a long call in while it runs; yields whether it is the only one."""
        with self._running.get_lock():
            self._running.value += 1
            alone = self._running.value == 1
        try:
            yield alone
        finally:
            with self._running.get_lock():
                self._running.value -= 1
