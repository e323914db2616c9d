"""A few slots for costly background work, shared fairly between the tenants who ask for it."""

from __future__ import annotations

import collections
import itertools
import threading


class FairSlots:
    """At most `total` holders at once and `per_owner` per owner. A free slot goes to the waiting
    owner served least recently (then the longest waiting ticket), so an owner with a hundred
    requests queued takes its turn beside one with a single request, never before it."""

    def __init__(self, total: int, per_owner: int = 1):
        self._total, self._per_owner = total, per_owner
        self._running: collections.Counter[str] = collections.Counter()
        self._waiting: dict[int, str] = {}  # ticket -> owner
        self._last_served: dict[str, int] = {}
        self._tickets, self._grants = itertools.count(), itertools.count()
        self._changed = threading.Condition()

    def acquire(self, owner: str, cancelled: threading.Event) -> bool:
        """Waits for a slot; False (holding none) once `cancelled` is set first."""
        with self._changed:
            ticket = next(self._tickets)
            self._waiting[ticket] = owner
            while not self._turn(ticket):
                if cancelled.is_set():
                    del self._waiting[ticket]
                    self._changed.notify_all()
                    return False
                self._changed.wait(0.25)  # a cancel does not notify: looked at this often
            del self._waiting[ticket]
            self._running[owner] += 1
            self._last_served[owner] = next(self._grants)
            return True

    def release(self, owner: str) -> None:
        with self._changed:
            self._running[owner] -= 1
            self._changed.notify_all()

    @property
    def running(self) -> int:
        with self._changed:
            return sum(self._running.values())

    def _turn(self, ticket: int) -> bool:
        if sum(self._running.values()) >= self._total:
            return False
        eligible = [
            (self._last_served.get(owner, -1), waiting)
            for waiting, owner in self._waiting.items()
            if self._running[owner] < self._per_owner
        ]
        return bool(eligible) and min(eligible)[1] == ticket
