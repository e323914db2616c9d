"""Starting a deployment's replicas (scheduler_svc/replicas.py) on a real Redis: a worker slow
enough for another to take its request over records nothing over the other's replicas and
leaves none of its own running."""

from __future__ import annotations

import pytest
import redis

from mlaas.errors import Aborted
from mlaas.local.redis_embedded import EmbeddedRedis
from mlaas.v1 import scheduler_pb2, types_pb2
from scheduler_svc.backends import ReplicaStatus
from scheduler_svc.replicas import Replicas
from scheduler_svc.store import DeploymentStore

S = scheduler_pb2


class TakenOverWhileStarting:
    """Starts replicas slowly: while it does, another worker takes the request over and records
    replicas of its own (as it did once a warm runtime made a start wait past the claim's idle
    time)."""

    def __init__(self, store: DeploymentStore):
        self._store = store
        self.deleted: list[str] = []

    def create(self, spec) -> ReplicaStatus:
        def replaced(d: scheduler_pb2.Deployment) -> None:
            d.ClearField("replica_status")
            d.replica_status.add(id="theirs", node="node-a")

        self._store.update(spec.deployment_id, replaced, S.DEPLOYMENT_STATE_PLACING, "taken over")
        return ReplicaStatus(spec.replica_id, "127.0.0.1:1234", True, handle="pid-mine")

    def delete(self, replica: ReplicaStatus, grace_seconds: float = 10.0) -> None:
        self.deleted.append(replica.handle)


@pytest.fixture
def store(tmp_path):
    embedded = EmbeddedRedis(tmp_path / "redis").start()
    yield DeploymentStore(redis.Redis.from_url(embedded.url))
    embedded.stop()


def test_a_worker_taken_over_while_starting_records_nothing_and_stops_what_it_started(store):
    deployment, _ = store.create(S.Deployment(model=types_pb2.ModelRef(name="m", version=1), tenant="a"))
    deployment = store.update(
        deployment.id, lambda d: d.replica_status.add(id="mine", node="node-a"), S.DEPLOYMENT_STATE_PLACING
    )
    backend = TakenOverWhileStarting(store)
    with pytest.raises(Aborted, match="other replicas now"):
        Replicas(store, backend, 30).start(deployment, ["mine"], S.DEPLOYMENT_STATE_STARTING, "starting")
    assert backend.deleted == ["pid-mine"]
    current = store.get(deployment.id)
    assert current.state == S.DEPLOYMENT_STATE_PLACING
    assert [(r.id, r.endpoint, r.handle) for r in current.replica_status] == [("theirs", "", "")]
