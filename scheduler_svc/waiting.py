"""Requests that no node can hold now wait aside, out of the queue: there each one would make
every request behind it wait its turn (500 unplaceable deploys once delayed a placeable one by
two minutes). A Deploy that does not fit at a first look goes aside at once; one that a worker
then fails to place goes there too. Every second the scheduler looks at them again and puts
back in the queue those the free capacity could hold now; a request that waited longer than the
placement timeout FAILS with the reason. A QUEUED deployment found neither in the queue nor
aside (its scheduler was killed between storing it and queueing it) is admitted again.
"""

from __future__ import annotations

import contextlib
import time

from mlaas.errors import Aborted, NotFound
from mlaas.v1 import scheduler_pb2
from scheduler_svc.placer import Placer
from scheduler_svc.queue import DeploymentQueue
from scheduler_svc.settings import SchedulerSettings
from scheduler_svc.store import DeploymentStore

S = scheduler_pb2
# A Deploy stores its deployment, then queues it: younger than this, it may be on its way.
ADMISSION_SECONDS = 10.0


def fail_if_waited_too_long(
    store: DeploymentStore, settings: SchedulerSettings, deployment: scheduler_pb2.Deployment
) -> bool:
    """FAILED (True) once a QUEUED deployment waited past the placement timeout."""
    if time.time() - deployment.created_at.ToSeconds() <= settings.placement_timeout_seconds:
        return False
    with contextlib.suppress(Aborted):  # decommissioned meanwhile
        store.update(
            deployment.id, lambda d: None, S.DEPLOYMENT_STATE_FAILED,
            f"not placed within {settings.placement_timeout_seconds:.0f}s: {deployment.reason}",
            only_from={S.DEPLOYMENT_STATE_QUEUED},
        )  # fmt: skip
    return True


class WaitingRoom:
    def __init__(self, settings: SchedulerSettings, store: DeploymentStore, queue: DeploymentQueue, placer: Placer):
        self._settings = settings
        self._store = store
        self._queue = queue
        self._placer = placer

    def admit(self, deployment: scheduler_pb2.Deployment) -> None:
        """A new request: into the queue if the free capacity could hold it now, else aside
        with the reason (so a burst of unplaceable requests never stands before placeable ones)."""
        placement = self._placer.first_look(deployment)
        if placement.placed:
            self._queue.enqueue(deployment.id)
            return
        with contextlib.suppress(Aborted, NotFound):  # decommissioned meanwhile
            self._store.update(deployment.id, lambda d: setattr(d, "reason", placement.reason),
                               only_from={S.DEPLOYMENT_STATE_QUEUED})  # fmt: skip
            self._queue.park(deployment.id)

    def revisit(self) -> None:
        """Every second: requests aside that fit now go back to the queue, those that waited
        past the placement timeout fail, and lost ones are admitted again."""
        queued = {d.id: d for d in self._store.list([S.DEPLOYMENT_STATE_QUEUED])}
        parked = self._queue.parked()
        waiting = []
        for deployment_id in parked:
            deployment = queued.get(deployment_id)
            if deployment is None:
                self._queue.unpark(deployment_id)  # decommissioned or taken care of
            elif fail_if_waited_too_long(self._store, self._settings, deployment):
                self._queue.unpark(deployment_id)
            else:
                waiting.append(deployment)
        aside = set(parked)
        self._readmit_lost([d for d in queued.values() if d.id not in aside])
        for deployment in self._placer.might_fit(waiting) if waiting else ():
            if self._queue.unpark(deployment.id):
                self._queue.enqueue(deployment.id)

    def _readmit_lost(self, not_aside: list[scheduler_pb2.Deployment]) -> None:
        """Those of the QUEUED deployments not aside that are not in the queue either."""
        now = time.time()
        settled = [d for d in not_aside if now - d.created_at.ToSeconds() > ADMISSION_SECONDS]
        if not settled:
            return
        in_stream = self._queue.in_stream()
        for deployment in settled:
            if deployment.id not in in_stream:
                self.admit(deployment)
