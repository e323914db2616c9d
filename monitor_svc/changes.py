"""A wake-up call for watchers: whoever records a drift event or a retraining step calls
`notify`, and the WatchDrift / WatchRetraining streams waiting in `wait` look again."""

from __future__ import annotations

import threading


class Changes:
    def __init__(self):
        self._condition = threading.Condition()

    def notify(self) -> None:
        with self._condition:
            self._condition.notify_all()

    def wait(self, timeout: float) -> None:
        with self._condition:
            self._condition.wait(timeout)
