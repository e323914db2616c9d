"""Whether a minted credential's deployment or training job still lives. A credential is signed
and expires (mlaas/services/auth.py), but its deployment may be destroyed, or its job end, long
before: the registry and the Monitor ask the scheduler, as their role, and refuse the credential
of one that is gone. An answer is remembered for a few seconds, so a destroyed deployment's
credentials are refused everywhere within that long. While the scheduler cannot answer, the
signature and the expiry still hold, and the credential is taken."""

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


class LiveScopes:
    def __init__(self, scheduler: SchedulerClient, remember_seconds: float = 2.0):
        """`scheduler`: a client that calls as the checking service's role."""
        self._scheduler = scheduler
        self._remember = remember_seconds
        self._known: dict[tuple[str, str], tuple[float, bool]] = {}  # (role, scope) -> (until, live)
        self._lock = threading.Lock()

    def check(self, identity: Identity) -> None:
        """Returns if `identity` is no minted credential or its scope lives; Unauthenticated if not."""
        if identity.role not in (RUNTIME, TRAINER):
            return
        key = (identity.role, identity.scope)
        with self._lock:
            until, live = self._known.get(key, (0.0, True))
            if until < time.monotonic():
                self._known = {k: v for k, v in self._known.items() if v[0] >= time.monotonic()}
        if until < time.monotonic():
            try:
                live = self._lives(identity)
            except MlaasError:  # the scheduler cannot say now: signature and expiry hold meanwhile
                return
            with self._lock:
                self._known[key] = (time.monotonic() + self._remember, live)
        if not live:
            what = "deployment" if identity.role == RUNTIME else "training job"
            raise Unauthenticated(f"the credential's {what} {identity.scope} is gone")

    def _lives(self, identity: Identity) -> bool:
        try:
            if identity.role == RUNTIME:
                return self._scheduler.get(identity.scope).state not in GONE
            return self._scheduler.training_job(identity.scope).state in JOB_LIVE
        except NotFound:
            return False
