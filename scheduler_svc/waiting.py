"""Requests that no node can hold now wait aside, out of the queue: there each one would make
every request behind it wait its turn (500 unplaceable deploys once delayed a placeable one by
two minutes). Every second the scheduler looks at them again and puts back in the queue those
the free capacity could hold now; a request that waited longer than the placement timeout
FAILS with the reason."""

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

    def revisit(self) -> None:
        waiting = []
        for deployment_id in self._queue.parked():
            try:
                deployment = self._store.get(deployment_id)
            except NotFound:
                deployment = None
            if deployment is None or deployment.state != S.DEPLOYMENT_STATE_QUEUED:
                self._queue.unpark(deployment_id)  # decommissioned or taken care of
            elif fail_if_waited_too_long(self._store, self._settings, deployment):
                self._queue.unpark(deployment_id)
            else:
                waiting.append(deployment)
        for deployment in self._placer.might_fit(waiting) if waiting else ():
            if self._queue.unpark(deployment.id):
                self._queue.enqueue(deployment.id)
