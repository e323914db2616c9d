"""Sharing and the two-step decommission.

An OPEN deployment of a model version is shared: a Deploy of the same version attaches a lease
to it instead of starting another. Decommission drops one lease; with none left the deployment
is CACHED (replicas kept warm) and a Deploy revives it at once. A CACHED deployment is DESTROYED
after its TTL, or earlier, least recently used first, when placement needs its capacity.
"""

from __future__ import annotations

import time
import uuid

import redis

from mlaas.errors import NotFound
from mlaas.v1 import scheduler_pb2
from scheduler_svc.backends import Backend
from scheduler_svc.locks import KeptLock
from scheduler_svc.replicas import as_status, publish_endpoints
from scheduler_svc.replies import text
from scheduler_svc.states import SHAREABLE
from scheduler_svc.store import PREFIX, DeploymentStore

S = scheduler_pb2


# States a worker is still working on; it settles the deployment when it is done.
ON_ITS_WAY = frozenset({S.DEPLOYMENT_STATE_PLACING, S.DEPLOYMENT_STATE_STARTING, S.DEPLOYMENT_STATE_UPDATING})


def _leases_key(deployment_id: str) -> str:
    return f"{PREFIX}{deployment_id}:leases"


def _shared_key(name: str, version: int) -> str:
    return f"mlaas:shared:{name}:{version}"


def ready_or_cached(deployment: scheduler_pb2.Deployment) -> int:
    """Where a deployment goes once its replicas serve: CACHED if its last lease went meanwhile."""
    return S.DEPLOYMENT_STATE_READY if deployment.leases else S.DEPLOYMENT_STATE_CACHED


class Lifecycle:
    def __init__(self, client: redis.Redis, store: DeploymentStore, backend: Backend):
        self._redis = client
        self._store = store
        self._backend = backend

    def share_lock(self, name: str, version: int):
        """Held while looking for a deployment to share and creating one, so two Deploys of one
        version never start two deployments."""
        return self._redis.lock(f"mlaas:share-lock:{name}:{version}", timeout=30, blocking_timeout=30)

    def shared(self, name: str, version: int) -> scheduler_pb2.Deployment | None:
        deployment_id = self._redis.get(_shared_key(name, version))
        if deployment_id is None:
            return None
        try:
            deployment = self._store.get(text(deployment_id))
        except NotFound:
            return None
        return deployment if deployment.state in SHAREABLE else None

    def mark_shared(self, deployment: scheduler_pb2.Deployment) -> None:
        self._redis.set(_shared_key(deployment.model.name, deployment.model.version), deployment.id)

    def add_lease(self, deployment_id: str, tenant: str) -> tuple[scheduler_pb2.Deployment, str]:
        """A new lease; a CACHED deployment comes back to READY at once (its replicas are warm)."""
        lease_id = f"l-{uuid.uuid4().hex[:12]}"
        self._redis.hset(_leases_key(deployment_id), lease_id, tenant)
        return self._settle_leases(deployment_id), lease_id

    def drop_lease(self, deployment_id: str, tenant: str, lease_id: str = "") -> scheduler_pb2.Deployment:
        """Drops the given lease (or one of the tenant's). The last one out caches a READY
        deployment, destroys a QUEUED one, and leaves one on its way (placing, starting,
        updating) to its worker, which caches it when it is done."""
        leases = self.leases(deployment_id)
        if not lease_id:
            lease_id = next((k for k, owner in leases.items() if owner == tenant), "")
        if lease_id not in leases or leases[lease_id] != tenant:
            raise NotFound(f"deployment {deployment_id} has no lease {lease_id or 'of yours'}")
        self._redis.hdel(_leases_key(deployment_id), lease_id)
        return self._settle_leases(deployment_id)

    def _settle_leases(self, deployment_id: str) -> scheduler_pb2.Deployment:
        """Brings the deployment's lease count, and with it its state, in line with its leases,
        in one transaction that starts again if a lease comes or goes meanwhile: a Deploy and
        the last Decommission racing once left a CACHED deployment with a live lease, which the
        TTL then destroyed under its holder."""
        key = _leases_key(deployment_id)
        moves: dict[tuple[bool, int], tuple[int | None, str]] = {
            (True, S.DEPLOYMENT_STATE_CACHED): (S.DEPLOYMENT_STATE_READY, "revived from the cache"),
            (False, S.DEPLOYMENT_STATE_READY): (S.DEPLOYMENT_STATE_CACHED, "no lease left: kept warm"),
            (False, S.DEPLOYMENT_STATE_QUEUED): (S.DEPLOYMENT_STATE_DESTROYED, "decommissioned before it was placed"),
        }

        def count(d: scheduler_pb2.Deployment) -> None:
            d.leases = int(self._redis.hlen(key))
            if not d.leases:  # nobody holds it: its owner's trial ends (the reconciler unloads it)
                d.ClearField("trial")

        def move(d: scheduler_pb2.Deployment) -> tuple[int | None, str]:
            return moves.get((d.leases > 0, d.state), (None, ""))

        def detail(d: scheduler_pb2.Deployment) -> str:
            if not d.leases and d.state in ON_ITS_WAY:
                return "no lease left: cached once its replicas serve"
            return move(d)[1]

        def state(d: scheduler_pb2.Deployment) -> int | None:
            return move(d)[0]

        return self._store.update(deployment_id, count, state, detail, watch=[key])

    def leases(self, deployment_id: str) -> dict[str, str]:
        """lease id -> tenant."""
        return {text(k): text(v) for k, v in self._redis.hgetall(_leases_key(deployment_id)).items()}

    def deployment_lock(self, deployment_id: str, seconds: float) -> KeptLock:
        """Held by whoever changes a deployment's replicas (a rollout, the reconcile loop); a
        blocking acquire waits up to `seconds` for it."""
        return KeptLock(self._redis, f"mlaas:deployment-lock:{deployment_id}", seconds)

    def reshare(self, deployment: scheduler_pb2.Deployment, old_versions: set[int]) -> None:
        """After a rollout, Deploys of the new version share this deployment, not of the old ones."""
        if deployment.mode != S.PLACEMENT_MODE_OPEN:
            return
        name = deployment.model.name
        for version in old_versions - {deployment.model.version}:
            key = _shared_key(name, version)
            if self._redis.get(key) == deployment.id.encode():
                self._redis.delete(key)
        with self.share_lock(name, deployment.model.version):
            if self.shared(name, deployment.model.version) is None:
                self.mark_shared(deployment)

    def destroy(self, deployment: scheduler_pb2.Deployment, detail: str) -> scheduler_pb2.Deployment:
        """Stops the replicas and frees their resources for good."""
        stopped = set()
        for replica in deployment.replica_status:
            if replica.handle:
                self._backend.delete(as_status(replica))
                stopped.add(replica.handle)

        def release(d: scheduler_pb2.Deployment) -> None:
            d.leases = 0
            for replica in d.replica_status:
                replica.ready = False
            publish_endpoints(d)

        self._redis.delete(_leases_key(deployment.id))
        self._backend.forget(deployment.id)
        destroyed = self._store.update(deployment.id, release, S.DEPLOYMENT_STATE_DESTROYED, detail)
        for replica in destroyed.replica_status:  # restarted meanwhile by the reconcile loop
            if replica.handle and replica.handle not in stopped:
                self._backend.delete(as_status(replica))
        return destroyed

    def cached_by_age(self, node: str | None = None) -> list[scheduler_pb2.Deployment]:
        """CACHED deployments, least recently used first (optionally only those on `node`)."""
        cached = self._store.list([S.DEPLOYMENT_STATE_CACHED])
        if node is not None:
            cached = [d for d in cached if any(r.node == node for r in d.replica_status)]
        return sorted(cached, key=lambda d: d.updated_at.ToNanoseconds())

    def expire(self, ttl_seconds: float) -> int:
        """Destroys CACHED deployments idle longer than the TTL; returns how many."""
        now = time.time()
        expired = [d for d in self.cached_by_age() if now - d.updated_at.ToSeconds() >= ttl_seconds]
        for deployment in expired:
            self.destroy(deployment, f"cache TTL of {ttl_seconds:.0f}s ran out")
        return len(expired)
