"""Placing against live capacity (scheduler_svc/placer.py) on a real Redis: concurrent
placements never share free capacity, running training jobs hold theirs, and CACHED deployments
are evicted, least recently used first, only when the request then fits."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis

from mlaas.local.redis_embedded import EmbeddedRedis
from mlaas.services.settings import ServerSettings
from mlaas.v1 import scheduler_pb2, types_pb2
from scheduler_svc.lifecycle import Lifecycle
from scheduler_svc.placer import Placer
from scheduler_svc.settings import SchedulerSettings, parse_nodes
from scheduler_svc.store import DeploymentStore

S = scheduler_pb2
ONE_CPU = types_pb2.Resources(cpu_millicores=1000, memory_bytes=2**28)


class Deleting:
    """Stopping a replica is all an eviction asks of the backend; it notes which."""

    def __init__(self):
        self.deleted: list[str] = []

    def delete(self, replica) -> None:
        self.deleted.append(replica.replica_id)

    def forget(self, deployment_id: str) -> None:
        pass


@dataclass
class Placing:
    """A placer on a real Redis with nodes a (2 CPUs) and b (1 CPU); `jobs`: the running training
    jobs holding capacity, as (node, resources)."""

    settings: SchedulerSettings
    client: redis.Redis
    store: DeploymentStore
    backend: Deleting
    jobs: list[tuple[str, types_pb2.Resources]]
    placer: Placer


@contextlib.contextmanager
def placing(tmp_path: Path, **settings) -> Iterator[Placing]:
    """A Placing, with these scheduler settings changed."""
    embedded = EmbeddedRedis(tmp_path / "redis").start()
    try:
        client = redis.Redis.from_url(embedded.url)
        store, backend, jobs = DeploymentStore(client), Deleting(), []
        scheduler_settings = SchedulerSettings(
            server=ServerSettings(), data_dir=tmp_path, redis_url=embedded.url,
            nodes=parse_nodes("a:cpu=2,memory=4Gi;b:cpu=1,memory=4Gi"), **settings,
        )  # fmt: skip
        placer = Placer(scheduler_settings, client, store, Lifecycle(client, store, backend), lambda: list(jobs))
        yield Placing(scheduler_settings, client, store, backend, jobs, placer)
    finally:
        embedded.stop()


@pytest.fixture
def parts(tmp_path: Path):
    with placing(tmp_path) as p:
        yield p.placer, p.store, p.backend, p.jobs


def queued(store: DeploymentStore, name: str, replicas: int = 1, strict: str = "") -> S.Deployment:
    mode = S.PLACEMENT_MODE_STRICT if strict else S.PLACEMENT_MODE_OPEN
    deployment = S.Deployment(
        model=types_pb2.ModelRef(name=name, version=1), replicas=replicas, resources=ONE_CPU, tenant="t", mode=mode,
        node=strict,
    )  # fmt: skip
    return store.create(deployment)[0]


def recorder(store: DeploymentStore, deployment_id: str, state: int = S.DEPLOYMENT_STATE_READY):
    def record(nodes: tuple[str, ...]) -> S.Deployment:
        def on(d: S.Deployment) -> None:
            d.replica_status.extend(S.Replica(id=f"{d.id}-{i}", node=n, handle=f"h{i}") for i, n in enumerate(nodes))

        return store.update(deployment_id, on, state)

    return record


def test_concurrent_placements_never_count_on_the_same_free_capacity(parts):
    placer, store, _, _ = parts
    requests = [queued(store, f"m{i}") for i in range(8)]  # 3 CPUs in all, 1 CPU each
    outcomes: list[bool] = []

    def place(deployment: S.Deployment) -> None:
        outcomes.append(placer.place(deployment, 1, recorder(store, deployment.id))[0].placed)

    threads = [threading.Thread(target=place, args=(d,)) for d in requests]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(outcomes) == [False] * 5 + [True] * 3
    placed = store.list([S.DEPLOYMENT_STATE_READY])
    per_node = {n: sum(r.node == n for d in placed for r in d.replica_status) for n in ("a", "b")}
    assert per_node == {"a": 2, "b": 1}


def test_a_running_training_job_holds_its_resources(parts):
    placer, store, _, jobs = parts
    jobs.extend([("a", types_pb2.Resources(cpu_millicores=2000)), ("b", types_pb2.Resources(cpu_millicores=1000))])
    deployment = queued(store, "m")
    placement, recorded = placer.place(deployment, 1, recorder(store, deployment.id))
    assert not placement.placed and recorded is None and placement.reason
    assert not placer.first_look(deployment).placed and placer.might_fit([deployment]) == []
    jobs.clear()  # the jobs finished
    assert placer.might_fit([deployment]) == [deployment]
    assert placer.place(deployment, 1, recorder(store, deployment.id))[0].placed


def test_cached_deployments_are_evicted_oldest_first_and_only_when_the_request_then_fits(parts):
    placer, store, backend, _ = parts
    older, newer = (queued(store, name) for name in ("older", "newer"))
    for deployment in (older, newer):  # on node a, then kept warm with no lease
        placer.place(deployment, 1, recorder(store, deployment.id, S.DEPLOYMENT_STATE_CACHED))
    filler = queued(store, "filler")
    assert placer.place(filler, 1, recorder(store, filler.id))[0].nodes == ("b",)
    too_big = queued(store, "too-big", replicas=4)  # 4 CPUs: more than the whole mesh
    assert not placer.place(too_big, 4, recorder(store, too_big.id))[0].placed
    assert backend.deleted == []  # nothing evicted for a request that would not fit anyway
    wanted = queued(store, "wanted")
    placement, _ = placer.place(wanted, 1, recorder(store, wanted.id))
    assert placement.nodes == ("a",)
    assert backend.deleted == [f"{older.id}-0"]  # the least recently used one, and only it
    assert store.get(older.id).state == S.DEPLOYMENT_STATE_DESTROYED
    assert store.get(newer.id).state == S.DEPLOYMENT_STATE_CACHED


def test_a_strict_request_evicts_only_cached_deployments_on_its_node(parts):
    placer, store, backend, _ = parts
    on_b = queued(store, "on-b", strict="b")
    placer.place(on_b, 1, recorder(store, on_b.id, S.DEPLOYMENT_STATE_CACHED))
    fill_a = queued(store, "fill-a", replicas=2, strict="a")
    placer.place(fill_a, 2, recorder(store, fill_a.id))
    strict_a = queued(store, "strict-a", strict="a")
    placement, _ = placer.place(strict_a, 1, recorder(store, strict_a.id))
    assert not placement.placed and "a" in placement.reason
    assert backend.deleted == []  # the cached replica on b would not make room on a
    strict_b = queued(store, "strict-b", strict="b")
    assert placer.place(strict_b, 1, recorder(store, strict_b.id))[0].nodes == ("b",)
    assert backend.deleted == [f"{on_b.id}-0"]
