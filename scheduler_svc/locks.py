"""A deployment's lock, kept alive by its holder: a Redis lock with a short expiry that a thread
of the holder renews while it holds it. A change of a deployment's replicas may take minutes
(replicas that start slowly), so a lock that had to outlast the longest one kept a deployment
frozen that long after its holder was killed (measured: 4 min UPDATING after a scheduler was
killed mid scale-up); kept alive, it is free within `ttl` seconds of its holder's death."""

from __future__ import annotations

import contextlib
import logging
import threading
import time

import redis
from redis.exceptions import LockError

log = logging.getLogger(__name__)
TTL_SECONDS = 10.0


class KeptLock:
    def __init__(self, client: redis.Redis, name: str, wait_seconds: float, ttl: float = TTL_SECONDS):
        # Not thread-local: the keeper thread renews what the holder's thread acquired.
        self._lock = client.lock(name, timeout=ttl, blocking_timeout=wait_seconds, thread_local=False)
        self._ttl = ttl
        self._released = threading.Event()
        self._keeper: threading.Thread | None = None

    def acquire(self, blocking: bool = True) -> bool:
        if not self._lock.acquire(blocking=blocking):
            return False
        self._released.clear()
        self._keeper = threading.Thread(target=self._keep, name=f"keeps {self._lock.name}", daemon=True)
        self._keeper.start()
        return True

    def _keep(self) -> None:
        renewed = time.monotonic()
        while not self._released.wait(self._ttl / 3):
            try:
                self._lock.reacquire()
                renewed = time.monotonic()
            except LockError:  # lost (Redis restarted, or this process stalled past the expiry)
                log.warning("lost %s while holding it", self._lock.name)
                return
            except redis.RedisError as err:
                if time.monotonic() - renewed > self._ttl:  # expired by now: nothing left to keep
                    log.warning("lost %s while holding it: %s", self._lock.name, err)
                    return
                log.warning("could not renew %s: %s", self._lock.name, err)  # the next try may get through

    @property
    def keeping(self) -> bool:
        """Whether a thread of its holder is renewing it."""
        return self._keeper is not None and self._keeper.is_alive()

    def release(self) -> None:
        self._released.set()
        if self._keeper is not None:
            self._keeper.join()
        with contextlib.suppress(LockError):  # expired meanwhile: nothing to release
            self._lock.release()

    def __enter__(self) -> KeptLock:
        if not self.acquire():
            raise LockError(f"{self._lock.name} is held by another; it was not freed in time")
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
