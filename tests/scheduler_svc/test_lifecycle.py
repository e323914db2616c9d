"""Leases and the states they decide (scheduler_svc/lifecycle.py) on a real Redis."""

from __future__ import annotations

import threading

import pytest
import redis

from mlaas.local.redis_embedded import EmbeddedRedis
from mlaas.v1 import scheduler_pb2, types_pb2
from scheduler_svc.lifecycle import Lifecycle
from scheduler_svc.store import DeploymentStore

S = scheduler_pb2


class NoBackend:
    """Nothing here starts or stops a replica."""


@pytest.fixture
def lifecycle(tmp_path):
    embedded = EmbeddedRedis(tmp_path / "redis").start()
    client = redis.Redis.from_url(embedded.url)
    store = DeploymentStore(client)
    yield Lifecycle(client, store, NoBackend()), store
    embedded.stop()


def test_a_deploy_racing_the_last_decommission_never_leaves_a_lease_on_a_cached_deployment(lifecycle):
    """The race once left a CACHED deployment holding a live lease (the TTL then destroyed it
    under its holder), and the next Decommission spun forever."""
    cycle, store = lifecycle
    deployment, _ = store.create(S.Deployment(model=types_pb2.ModelRef(name="m", version=1), tenant="a"))
    store.update(deployment.id, lambda d: None, S.DEPLOYMENT_STATE_READY)
    _, lease = cycle.add_lease(deployment.id, "a")
    for _ in range(60):
        held: dict[str, str] = {}
        threads = [
            threading.Thread(target=lambda lease=lease: cycle.drop_lease(deployment.id, "a", lease)),
            threading.Thread(target=lambda held=held: held.update(b=cycle.add_lease(deployment.id, "b")[1])),
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)
        current = store.get(deployment.id)
        assert current.leases == len(cycle.leases(deployment.id)) == 1
        assert current.state == S.DEPLOYMENT_STATE_READY
        _, lease = cycle.add_lease(deployment.id, "a")
        assert cycle.drop_lease(deployment.id, "b", held["b"]).state == S.DEPLOYMENT_STATE_READY
    assert cycle.drop_lease(deployment.id, "a", lease).state == S.DEPLOYMENT_STATE_CACHED
    revived, _ = cycle.add_lease(deployment.id, "b")
    assert revived.state == S.DEPLOYMENT_STATE_READY and revived.leases == 1
    details = [e.detail for _, e in store.events(deployment.id)]
    assert details[-2:] == ["no lease left: kept warm", "revived from the cache"]


class RestartedMeanwhile:
    """Stops replicas; while the first stops, the reconcile loop (which saw it exit) records the
    replica restarted, as it did on a busy machine."""

    def __init__(self, store: DeploymentStore, deployment_id: str):
        self._store, self._deployment_id = store, deployment_id
        self.deleted: list[str] = []

    def delete(self, replica, grace_seconds: float = 10.0) -> None:
        self.deleted.append(replica.handle)
        if replica.handle == "pid-1":
            self._store.update(self._deployment_id, lambda d: setattr(d.replica_status[0], "handle", "pid-2"))

    def forget(self, deployment_id: str) -> None:
        pass


def test_a_replica_restarted_while_its_deployment_is_destroyed_is_stopped_too(tmp_path):
    """An evicted deployment's replica, restarted by the reconcile loop between the eviction's
    stop and its update, ran on with nothing left to stop it."""
    embedded = EmbeddedRedis(tmp_path / "redis").start()
    try:
        client = redis.Redis.from_url(embedded.url)
        store = DeploymentStore(client)
        deployment, _ = store.create(S.Deployment(model=types_pb2.ModelRef(name="m", version=1), tenant="a"))
        store.update(deployment.id, lambda d: d.replica_status.add(id="r-1", handle="pid-1"), S.DEPLOYMENT_STATE_CACHED)
        backend = RestartedMeanwhile(store, deployment.id)
        destroyed = Lifecycle(client, store, backend).destroy(store.get(deployment.id), "evicted")
        assert destroyed.state == S.DEPLOYMENT_STATE_DESTROYED and backend.deleted == ["pid-1", "pid-2"]
    finally:
        embedded.stop()
