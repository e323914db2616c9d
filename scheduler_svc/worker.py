"""Placement workers: claim a deployment request, place it, start its replicas, wait until they
are healthy, and only then acknowledge it. A request for an UPDATING deployment (Scale,
UpdateDeployment) is a rollout (rollout.py). A worker that dies leaves the request pending, and
another worker takes it over (the queue's XAUTOCLAIM), starting again from QUEUED."""

from __future__ import annotations

import logging
import threading
import time

from mlaas.errors import Aborted, NotFound
from mlaas.v1 import scheduler_pb2
from scheduler_svc.lifecycle import ready_or_cached
from scheduler_svc.placer import Placer
from scheduler_svc.queue import Claimed, DeploymentQueue
from scheduler_svc.replicas import Replicas, new_replica, publish_endpoints, require_replicas
from scheduler_svc.rollout import Rollout
from scheduler_svc.settings import SchedulerSettings
from scheduler_svc.store import DeploymentStore
from scheduler_svc.waiting import fail_if_waited_too_long

log = logging.getLogger(__name__)
S = scheduler_pb2
RETRY_PAUSE_SECONDS = 0.5


class PlacementWorker(threading.Thread):
    def __init__(
        self,
        name: str,
        settings: SchedulerSettings,
        store: DeploymentStore,
        queue: DeploymentQueue,
        replicas: Replicas,
        placer: Placer,
        rollout: Rollout,
        stop: threading.Event,
    ):
        super().__init__(name=name, daemon=True)
        self._placer = placer
        self._rollout = rollout
        self._settings = settings
        self._store = store
        self._queue = queue
        self._replicas = replicas
        self._stopping = stop

    def run(self) -> None:
        while not self._stopping.is_set():
            try:
                for claimed in self._queue.claim(self.name, block_ms=500):
                    self.handle(claimed)
            except Exception:  # a worker must outlive any one request
                log.exception("%s: placement failed", self.name)
                time.sleep(RETRY_PAUSE_SECONDS)

    def handle(self, claimed: Claimed) -> None:
        try:
            deployment = self._store.get(claimed.deployment_id)
        except NotFound:
            self._queue.ack(claimed.entry_id)
            return
        if deployment.state == S.DEPLOYMENT_STATE_UPDATING:
            self._rollout.converge(deployment)
            self._queue.ack(claimed.entry_id)
            return
        if deployment.state in (S.DEPLOYMENT_STATE_PLACING, S.DEPLOYMENT_STATE_STARTING):
            # Taken over from a worker that died mid-way: undo what it started, then place again.
            self._replicas.remove(deployment.replica_status)
            deployment = self._store.update(
                deployment.id, lambda d: d.ClearField("replica_status"), S.DEPLOYMENT_STATE_QUEUED,
                f"taken over by {self.name} (attempt {claimed.attempt})",
                only_from={S.DEPLOYMENT_STATE_PLACING, S.DEPLOYMENT_STATE_STARTING},
            )  # fmt: skip
        if deployment.state != S.DEPLOYMENT_STATE_QUEUED:
            self._queue.ack(claimed.entry_id)
            return
        try:
            placed = self._place(deployment)
            if placed is None:
                self._wait_or_fail(claimed, deployment)
                return
            self._start(placed)
        except Aborted as err:  # decommissioned or destroyed meanwhile
            log.info("%s: %s gave up: %s", self.name, deployment.id, err.message)
        self._queue.ack(claimed.entry_id)

    def _place(self, deployment: scheduler_pb2.Deployment) -> scheduler_pb2.Deployment | None:
        def assign(nodes: tuple[str, ...]) -> scheduler_pb2.Deployment:
            def replicas_on_nodes(d: scheduler_pb2.Deployment) -> None:
                d.ClearField("replica_status")
                d.replica_status.extend(new_replica(d, node) for node in nodes)

            return self._store.update(
                deployment.id, replicas_on_nodes, S.DEPLOYMENT_STATE_PLACING, f"placed on {', '.join(nodes)}",
                only_from={S.DEPLOYMENT_STATE_QUEUED},
            )  # fmt: skip

        placement, placed = self._placer.place(deployment, deployment.replicas, assign)
        if placed is None:
            self._store.update(deployment.id, lambda d: setattr(d, "reason", placement.reason))
        return placed

    def _wait_or_fail(self, claimed: Claimed, deployment: scheduler_pb2.Deployment) -> None:
        if not fail_if_waited_too_long(self._store, self._settings, self._store.get(deployment.id)):  # its reason
            self._queue.park(deployment.id)  # aside: the requests behind it go on at once
        self._queue.ack(claimed.entry_id)

    def _start(self, deployment: scheduler_pb2.Deployment) -> None:
        ids = [r.id for r in deployment.replica_status]
        deployment = self._replicas.start(
            deployment, ids, S.DEPLOYMENT_STATE_STARTING, f"starting {len(ids)} replica(s)",
            only_from={S.DEPLOYMENT_STATE_PLACING},
        )  # fmt: skip
        problem = self._replicas.wait_healthy(deployment, ids)
        try:
            if problem:
                self._replicas.remove(deployment.replica_status)
                self._store.update(
                    deployment.id, lambda d: require_replicas(d, ids), S.DEPLOYMENT_STATE_FAILED, problem,
                    only_from={S.DEPLOYMENT_STATE_STARTING},
                )  # fmt: skip
                return

            def ready(d: scheduler_pb2.Deployment) -> None:
                require_replicas(d, ids)
                for replica in d.replica_status:
                    replica.ready = True
                publish_endpoints(d)

            self._store.update(
                deployment.id, ready, ready_or_cached, f"{len(ids)}/{len(ids)} ready",
                only_from={S.DEPLOYMENT_STATE_STARTING},
            )  # fmt: skip
        except Aborted:  # destroyed while starting (the mesh shut down): leave nothing running
            self._replicas.remove(deployment.replica_status)
            raise
