"""A service's background rounds (the scheduler's cache expiry, reconcile loop and training-job
checks; the registry's sweep of abandoned uploads): each a thread calling one action at a fixed
interval until the service stops. A failed round is logged and the next one runs anyway: one bad
deployment must not stop the loop for the others."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)


class Periodic(threading.Thread):
    def __init__(self, name: str, action: Callable[[], object], interval_seconds: float, stop: threading.Event):
        super().__init__(name=name, daemon=True)
        self._action = action
        self._interval = interval_seconds
        self._stopping = stop

    def run(self) -> None:
        while not self._stopping.wait(self._interval):
            try:
                self._action()
            except Exception:  # the next round runs anyway
                log.exception("%s: a round failed", self.name)
