"""Whether a minted credential's deployment or training job still lives. A credential is signed
and expires (mlaas/services/auth.py), but its deployment may be destroyed, or its job end, long
before: the registry and the Monitor ask the scheduler, as their role, and refuse the credential
of one that is gone. A "lives" is remembered for a few seconds, so a destroyed deployment's
credentials are refused everywhere within that long; a "gone" for good (a destroyed deployment
or an ended job never comes back, and ids are never reused). While the scheduler cannot answer,
the signature and the expiry still hold, and the credential is taken."""

from __future__ import annotations

import threading
import time

from mlaas.client import SchedulerClient
from mlaas.errors import MlaasError, NotFound, Unauthenticated
from mlaas.services.auth import RUNTIME, TRAINER, Identity
from mlaas.v1 import scheduler_pb2

S = scheduler_pb2
GONE = (S.DEPLOYMENT_STATE_DESTROYED, S.DEPLOYMENT_STATE_FAILED)
JOB_LIVE = (S.JOB_STATE_PENDING, S.JOB_STATE_RUNNING)
KEEP_GONE = 100_000  # scopes remembered as gone; the oldest are forgotten (asked again) beyond


class LiveScopes:
    def __init__(self, scheduler: SchedulerClient, remember_seconds: float = 2.0):
        """`scheduler`: a client that calls as the checking service's role."""
        self._scheduler = scheduler
        self._remember = remember_seconds
        self._alive: dict[tuple[str, str], float] = {}  # (role, scope) -> until when it is taken as live
        self._gone: dict[tuple[str, str], None] = {}  # in the order they went
        self._lock = threading.Lock()

    def check(self, identity: Identity) -> None:
        """Returns if `identity` is no minted credential or its scope lives; Unauthenticated if not."""
        if identity.role not in (RUNTIME, TRAINER):
            return
        key, now = (identity.role, identity.scope), time.monotonic()
        with self._lock:
            gone, live_until = key in self._gone, self._alive.get(key, 0.0)
        if not gone and live_until < now:
            try:
                gone = not self._lives(identity)
            except MlaasError:  # the scheduler cannot say now: signature and expiry hold meanwhile
                return
            with self._lock:
                self._alive = {k: until for k, until in self._alive.items() if until >= now}
                if gone:
                    self._gone[key] = None
                    if len(self._gone) > KEEP_GONE:
                        del self._gone[next(iter(self._gone))]
                else:
                    self._alive[key] = now + self._remember
        if gone:
            what = "deployment" if identity.role == RUNTIME else "training job"
            raise Unauthenticated(f"the credential's {what} {identity.scope} is gone")

    def _lives(self, identity: Identity) -> bool:
        try:
            if identity.role == RUNTIME:
                return self._scheduler.get(identity.scope).state not in GONE
            return self._scheduler.training_job(identity.scope).state in JOB_LIVE
        except NotFound:
            return False
