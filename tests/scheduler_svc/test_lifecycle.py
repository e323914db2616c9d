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
