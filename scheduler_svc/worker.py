"""Placement workers: claim a deployment request, place it, start its replicas, wait until they
are healthy, and only then acknowledge it. A worker that dies leaves the request pending, and
another worker takes it over (the queue's XAUTOCLAIM), starting again from QUEUED."""

from __future__ import annotations

import logging
import threading
import time

import redis

from mlaas.errors import NotFound
from mlaas.net import wait_healthy
from mlaas.refs import format_ref
from mlaas.v1 import scheduler_pb2
from scheduler_svc.backends import Backend, ReplicaSpec
from scheduler_svc.lifecycle import Lifecycle, replica_status
from scheduler_svc.placement import Node, place
from scheduler_svc.queue import Claimed, DeploymentQueue
from scheduler_svc.settings import SchedulerSettings
from scheduler_svc.states import HOLDING
from scheduler_svc.store import DeploymentStore

log = logging.getLogger(__name__)
S = scheduler_pb2
PLACEMENT_LOCK = "mlaas:placement-lock"
RETRY_PAUSE_SECONDS = 0.5


def nodes_with_allocations(
    settings: SchedulerSettings, store: DeploymentStore, holding: frozenset[int] = HOLDING
) -> list[Node]:
    """The configured nodes with what deployments in `holding` states hold on them (derived,
    never stored)."""
    used = {n.name: [0, 0, 0] for n in settings.nodes}
    for deployment in store.list(holding):
        res = deployment.resources
        for replica in deployment.replica_status:
            if replica.node in used:
                totals = used[replica.node]
                totals[0] += res.cpu_millicores
                totals[1] += res.memory_bytes
                totals[2] += res.gpus
    return [Node(n.name, n.allocatable, tuple(used[n.name]), n.labels) for n in settings.nodes]


class PlacementWorker(threading.Thread):
    def __init__(
        self,
        name: str,
        settings: SchedulerSettings,
        client: redis.Redis,
        store: DeploymentStore,
        queue: DeploymentQueue,
        backend: Backend,
        lifecycle: Lifecycle,
        stop: threading.Event,
    ):
        super().__init__(name=name, daemon=True)
        self._lifecycle = lifecycle
        self._settings = settings
        self._redis = client
        self._store = store
        self._queue = queue
        self._backend = backend
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
        if deployment.state in (S.DEPLOYMENT_STATE_PLACING, S.DEPLOYMENT_STATE_STARTING):
            # Taken over from a worker that died mid-way: undo what it started, then place again.
            self._remove_replicas(deployment)
            deployment = self._store.update(
                deployment.id, lambda d: d.ClearField("replica_status"), S.DEPLOYMENT_STATE_QUEUED,
                f"taken over by {self.name} (attempt {claimed.attempt})",
            )  # fmt: skip
        if deployment.state != S.DEPLOYMENT_STATE_QUEUED:
            self._queue.ack(claimed.entry_id)
            return
        placed = self._place(deployment)
        if placed is None:
            self._wait_or_fail(claimed, deployment)
            return
        self._start(placed)
        self._queue.ack(claimed.entry_id)

    def _place(self, deployment: scheduler_pb2.Deployment) -> scheduler_pb2.Deployment | None:
        res = deployment.resources
        strict = deployment.node if deployment.mode == S.PLACEMENT_MODE_STRICT else None
        need = (res.cpu_millicores, res.memory_bytes, res.gpus)
        with self._redis.lock(PLACEMENT_LOCK, timeout=30, blocking_timeout=30):
            placement = place(need, deployment.replicas, nodes_with_allocations(self._settings, self._store), strict)
            without_cache = HOLDING - {S.DEPLOYMENT_STATE_CACHED}
            if (
                not placement.placed
                and place(
                    need,
                    deployment.replicas,
                    nodes_with_allocations(self._settings, self._store, without_cache),
                    strict,
                ).placed
            ):
                # It fits once cached deployments make room: evict them, least recently used first.
                for victim in self._lifecycle.cached_by_age(node=strict):
                    self._lifecycle.destroy(victim, f"evicted from the cache to place {deployment.id}")
                    nodes = nodes_with_allocations(self._settings, self._store)
                    placement = place(need, deployment.replicas, nodes, strict)
                    if placement.placed:
                        break
            if not placement.placed:
                self._store.update(deployment.id, lambda d: setattr(d, "reason", placement.reason))
                return None

            def assign(d: scheduler_pb2.Deployment) -> None:
                d.ClearField("replica_status")
                for index, node in enumerate(placement.nodes):
                    d.replica_status.add(id=f"{d.id}-r{index}", node=node)

            return self._store.update(
                deployment.id, assign, S.DEPLOYMENT_STATE_PLACING, f"placed on {', '.join(placement.nodes)}"
            )

    def _wait_or_fail(self, claimed: Claimed, deployment: scheduler_pb2.Deployment) -> None:
        waited = time.time() - deployment.created_at.ToSeconds()
        latest = self._store.get(deployment.id)
        if waited > self._settings.placement_timeout_seconds:
            self._store.update(
                deployment.id, lambda d: None, S.DEPLOYMENT_STATE_FAILED,
                f"not placed within {self._settings.placement_timeout_seconds:.0f}s: {latest.reason}",
            )  # fmt: skip
        else:
            self._queue.enqueue(deployment.id)  # look again once capacity may have changed
            time.sleep(RETRY_PAUSE_SECONDS)
        self._queue.ack(claimed.entry_id)

    def _start(self, deployment: scheduler_pb2.Deployment) -> None:
        model_ref = format_ref(deployment.model)
        started = []
        for replica in deployment.replica_status:
            spec = ReplicaSpec(
                replica.id, deployment.id, replica.node, model_ref,
                deployment.resources.cpu_millicores, deployment.resources.memory_bytes,
            )  # fmt: skip
            started.append((replica.id, self._backend.create(spec)))
        by_id = dict(started)

        def record(d: scheduler_pb2.Deployment) -> None:
            for replica in d.replica_status:
                status = by_id[replica.id]
                replica.endpoint, replica.handle = status.endpoint, status.handle

        deployment = self._store.update(
            deployment.id, record, S.DEPLOYMENT_STATE_STARTING, f"starting {len(started)} replica(s)"
        )
        try:
            for _, status in started:
                wait_healthy(status.endpoint, timeout=self._settings.start_timeout_seconds)
        except TimeoutError as err:
            logs = " | ".join(self._backend.logs(s, lines=5) for _, s in started)[-800:]
            self._remove_replicas(deployment)
            self._store.update(deployment.id, lambda d: None, S.DEPLOYMENT_STATE_FAILED, f"{err}; logs: {logs}")
            return

        def ready(d: scheduler_pb2.Deployment) -> None:
            for replica in d.replica_status:
                replica.ready = True
            d.ClearField("endpoints")
            d.endpoints.extend(r.endpoint for r in d.replica_status)

        self._store.update(deployment.id, ready, S.DEPLOYMENT_STATE_READY, f"{len(started)}/{len(started)} ready")

    def _remove_replicas(self, deployment: scheduler_pb2.Deployment) -> None:
        for replica in deployment.replica_status:
            if replica.handle:
                self._backend.delete(replica_status(replica))
