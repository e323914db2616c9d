"""The scheduler end to end on real parts (see conftest.py): deploy, watch, share, cache,
evict, refuse."""

from __future__ import annotations

import grpc
import numpy as np
import pytest
import redis

from mlaas import errors
from mlaas.client import RegistryClient, SchedulerClient
from mlaas.inference_client import DeploymentInference, InferenceClient
from mlaas.message_limits import BULK_THRESHOLD_BYTES
from mlaas.v1 import scheduler_pb2, types_pb2
from registry_svc.guards import SchedulerGuard
from scheduler_svc.queue import DeploymentQueue
from scheduler_svc.settings import parse_nodes
from scheduler_svc.store import DeploymentStore
from tests.scheduler_svc.conftest import stub_of, watch_until

S = scheduler_pb2


@pytest.mark.parametrize("mesh", [4.0], indirect=True)
def test_find_deploy_watch_stream_decommission_cache_destroy(mesh, parts):
    stub, X, model, address = mesh
    with RegistryClient(parts.registry_address) as registry:
        found = [r.model.description.name for r in registry.find(task="classification", max_cpu="1")]
    assert "iris" in found
    reply = stub.Deploy(S.DeployRequest(model=types_pb2.ModelRef(name="iris"), idempotency_key="first"))
    deployment = reply.deployment
    assert deployment.state == S.DEPLOYMENT_STATE_QUEUED and deployment.model.version == 1
    again = stub.Deploy(S.DeployRequest(model=types_pb2.ModelRef(name="iris"), idempotency_key="first"))
    assert again.deployment.id == deployment.id
    events = watch_until(stub, deployment.id, {S.DEPLOYMENT_STATE_READY, S.DEPLOYMENT_STATE_FAILED})
    states = [e.event.state for e in events]
    assert states == [S.DEPLOYMENT_STATE_QUEUED, S.DEPLOYMENT_STATE_PLACING, S.DEPLOYMENT_STATE_STARTING,
                      S.DEPLOYMENT_STATE_READY], [e.event.detail for e in events]  # fmt: skip
    ready = events[-1].deployment
    assert ready.replica_status[0].node == "node-a"  # the tiny node cannot hold 1 CPU
    with SchedulerClient(address) as scheduler, DeploymentInference(scheduler, deployment.id) as runtime:
        results = list(runtime.stream({"X": X[i : i + 5]} for i in range(0, 150, 5)))
    assert sorted(int(r.request_id) for r in results) == list(range(30))
    labels = np.concatenate([r.outputs["label"] for r in sorted(results, key=lambda r: int(r.request_id))])
    assert np.array_equal(labels, model.predict(X))
    nodes = {n.name: n for n in stub.ListNodes(S.ListNodesRequest()).nodes}
    assert nodes["node-a"].allocated.cpu_millicores == 1000 and nodes["node-a"].free.cpu_millicores == 1000
    cached = stub.Decommission(S.DecommissionRequest(deployment_id=deployment.id)).deployment
    assert cached.state == S.DEPLOYMENT_STATE_CACHED and cached.leases == 0
    with InferenceClient(ready.endpoints[0]) as runtime:  # still warm
        assert runtime.ready()
    events = watch_until(stub, deployment.id, {S.DEPLOYMENT_STATE_DESTROYED})  # after the 4 s TTL
    assert "cache TTL of 4s ran out" in events[-1].event.detail
    assert stub.ListNodes(S.ListNodesRequest()).nodes[0].allocated.cpu_millicores == 0
    with pytest.raises(errors.Unavailable):  # the replica process is gone
        InferenceClient(ready.endpoints[0], timeout=2).ready()
    with pytest.raises(grpc.RpcError) as info:
        stub.Decommission(S.DecommissionRequest(deployment_id=deployment.id))
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION


def test_leases_share_a_deployment_and_the_last_one_caches_it(mesh):
    stub, X, _, _ = mesh
    first = stub.Deploy(S.DeployRequest(model=types_pb2.ModelRef(name="iris")))
    second = stub.Deploy(S.DeployRequest(model=types_pb2.ModelRef(name="iris", version=1)))
    assert second.deployment.id == first.deployment.id and second.lease_id != first.lease_id
    assert second.deployment.leases == 2
    ready = watch_until(stub, first.deployment.id, {S.DEPLOYMENT_STATE_READY})[-1].deployment
    dropped = stub.Decommission(S.DecommissionRequest(deployment_id=ready.id, lease_id=first.lease_id)).deployment
    assert dropped.state == S.DEPLOYMENT_STATE_READY and dropped.leases == 1
    with pytest.raises(grpc.RpcError) as info:  # a lease goes only once
        stub.Decommission(S.DecommissionRequest(deployment_id=ready.id, lease_id=first.lease_id))
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    cached = stub.Decommission(S.DecommissionRequest(deployment_id=ready.id)).deployment
    assert cached.state == S.DEPLOYMENT_STATE_CACHED
    revived = stub.Deploy(S.DeployRequest(model=types_pb2.ModelRef(name="iris")))
    assert revived.deployment.id == ready.id and revived.deployment.state == S.DEPLOYMENT_STATE_READY
    assert list(revived.deployment.endpoints) == list(ready.endpoints)  # the same warm replica
    with InferenceClient(ready.endpoints[0]) as runtime:
        assert runtime.infer("iris", {"X": X[:1]})["label"].shape == (1,)


def test_cached_deployments_make_room_least_recently_used_first(mesh):
    stub, _, _, _ = mesh

    def ready(name):
        deployment = stub.Deploy(S.DeployRequest(model=types_pb2.ModelRef(name=name))).deployment
        return watch_until(stub, deployment.id, {S.DEPLOYMENT_STATE_READY, S.DEPLOYMENT_STATE_FAILED})[-1]

    a = ready("iris").deployment
    stub.Decommission(S.DecommissionRequest(deployment_id=a.id))  # cached: holds 1 of node-a's 2 CPUs
    b = ready("iris-b").deployment  # takes the other CPU
    c = ready("iris-c")  # fits only if the cached one goes
    assert c.event.state == S.DEPLOYMENT_STATE_READY, c.event.detail
    evicted = stub.GetDeployment(S.GetDeploymentRequest(deployment_id=a.id)).deployment
    assert evicted.state == S.DEPLOYMENT_STATE_DESTROYED
    assert stub.GetDeployment(S.GetDeploymentRequest(deployment_id=b.id)).deployment.state == S.DEPLOYMENT_STATE_READY
    history = watch_until(stub, a.id, {S.DEPLOYMENT_STATE_DESTROYED})
    assert f"evicted from the cache to place {c.deployment.id}" in history[-1].event.detail


def test_strict_on_a_full_node_waits_with_a_reason_then_fails(mesh):
    stub, _, _, _ = mesh
    deployment = stub.Deploy(
        S.DeployRequest(model=types_pb2.ModelRef(name="iris"), mode=S.PLACEMENT_MODE_STRICT, node="tiny")
    ).deployment
    events = watch_until(stub, deployment.id, {S.DEPLOYMENT_STATE_READY, S.DEPLOYMENT_STATE_FAILED})
    assert events[-1].event.state == S.DEPLOYMENT_STATE_FAILED
    assert "node 'tiny' has cpu 500m, memory 512Mi, gpus 0 free" in events[-1].event.detail
    assert not any(e.event.state == S.DEPLOYMENT_STATE_READY for e in events)  # never elsewhere


def test_unplaceable_requests_wait_aside_and_placeable_ones_go_past(parts):
    """Requests no node can hold wait out of the queue (once, 500 of them delayed a placeable one
    by two minutes): the placeable deploy behind them is placed at once, and they are placed as
    soon as capacity frees up."""
    scheduler = parts.start(placement_timeout_seconds=600)
    address = f"127.0.0.1:{scheduler.server.port}"
    queue = DeploymentQueue(redis.Redis.from_url(parts.settings.redis_url))
    with SchedulerClient(address) as client:
        blocker = client.wait_ready(client.deploy("iris-b", replicas=2).id)  # node-a's 2 CPUs
        # One OPEN request that fits once node-a frees up, and 19 STRICT ones that never fit on tiny.
        waiting = [client.deploy("iris-c").id] + [client.deploy("iris-c", strict_node="tiny").id for _ in range(19)]
        small = types_pb2.Resources(cpu_millicores=100, memory_bytes=64 << 20)
        with grpc.insecure_channel(address) as channel:
            placeable = stub_of(channel).Deploy(S.DeployRequest(model=types_pb2.ModelRef(name="iris"), resources=small))
        assert client.wait_ready(placeable.deployment.id).state == S.DEPLOYMENT_STATE_READY
        assert all(client.get(i).state == S.DEPLOYMENT_STATE_QUEUED for i in waiting)
        assert set(queue.parked()) == set(waiting) and queue.pending() == 0  # none of them in the stream
        assert client.get(waiting[0]).reason  # why it waits, visible
        for deployment_id in waiting[1:]:
            client.decommission(deployment_id)
        client.decommission(blocker.id)  # capacity frees up: the one still waiting is placed
        assert client.wait_ready(waiting[0]).state == S.DEPLOYMENT_STATE_READY
        assert queue.parked() == []


def test_a_deployment_stored_but_never_queued_is_admitted_again(parts):
    """A scheduler killed between storing a Deploy and queueing it once left the deployment
    QUEUED forever (and counted against its tenant's quota): the waiting room admits it again."""
    scheduler = parts.start()
    store = DeploymentStore(redis.Redis.from_url(parts.settings.redis_url))
    small = types_pb2.Resources(cpu_millicores=100, memory_bytes=64 << 20)
    model = types_pb2.ModelRef(name="iris", version=1)
    lost, _ = store.create(S.Deployment(model=model, replicas=1, leases=1, resources=small))
    store.update(lost.id, lambda d: d.created_at.FromSeconds(d.created_at.seconds - 60))  # well past its admission
    with SchedulerClient(f"127.0.0.1:{scheduler.server.port}") as client:
        assert client.wait_ready(lost.id).state == S.DEPLOYMENT_STATE_READY


@pytest.mark.parametrize(
    ("request_message", "code", "message"),
    [
        (S.DeployRequest(), grpc.StatusCode.INVALID_ARGUMENT, "model.name is required"),
        (S.DeployRequest(model=types_pb2.ModelRef(name="absent")), grpc.StatusCode.NOT_FOUND, "model absent not found"),
        (S.DeployRequest(model=types_pb2.ModelRef(name="iris"), mode=S.PLACEMENT_MODE_STRICT),
         grpc.StatusCode.INVALID_ARGUMENT, "STRICT placement needs node"),
        (S.DeployRequest(model=types_pb2.ModelRef(name="iris"), mode=S.PLACEMENT_MODE_STRICT, node="moon"),
         grpc.StatusCode.NOT_FOUND, "node 'moon' does not exist"),
        (S.DeployRequest(model=types_pb2.ModelRef(name="iris"), replicas=500), grpc.StatusCode.INVALID_ARGUMENT,
         "replicas must be between 1 and 64"),
        (S.DeployRequest(model=types_pb2.ModelRef(name="iris"), backend="docker"), grpc.StatusCode.INVALID_ARGUMENT,
         "backend 'docker' is not available here"),
    ],
)  # fmt: skip
def test_bad_deploy_requests(mesh, request_message, code, message):
    stub, _, _, _ = mesh
    with pytest.raises(grpc.RpcError) as info:
        stub.Deploy(request_message)
    assert info.value.code() == code
    assert message in info.value.details()
    assert list(stub.ListDeployments(S.ListDeploymentsRequest()).deployments) == []


def test_settings_nodes_parse():
    nodes = parse_nodes("a:cpu=1500m,memory=2Gi,gpus=1; b:cpu=2,memory=1G")
    assert [(n.name, n.allocatable) for n in nodes] == [("a", (1500, 2 * 2**30, 1)), ("b", (2000, 10**9, 0))]
    with pytest.raises(ValueError, match="expected NAME:cpu=N,memory=SIZE"):
        parse_nodes("a:cpu=1")


def test_the_registry_guard_refuses_to_delete_a_deployed_version(mesh):
    stub, _, _, address = mesh
    guard = SchedulerGuard(SchedulerClient(address, timeout=10))
    assert guard.refusal("iris", 1) is None
    deployment = stub.Deploy(S.DeployRequest(model=types_pb2.ModelRef(name="iris"))).deployment
    watch_until(stub, deployment.id, {S.DEPLOYMENT_STATE_READY})
    refusal = "it has 1 live deployment(s); they must be decommissioned first"  # whose is not said
    assert guard.refusal("iris", 1) == refusal
    stub.Decommission(S.DecommissionRequest(deployment_id=deployment.id))
    assert guard.refusal("iris", 1) == refusal  # CACHED, still warm: its artifact is in use
    assert guard.refusal("iris-b", 1) is None
    unreachable = SchedulerGuard(SchedulerClient("127.0.0.1:1", timeout=10)).refusal("iris", 1)
    assert unreachable.startswith("the scheduler at 127.0.0.1:1 cannot confirm it is not deployed")


def test_list_deployments_pages_oldest_first_and_nothing_shifts_between_pages(mesh):
    """Three deployments too big for the nodes (they wait, nothing starts), listed one at a
    time: every one once, oldest first; one decommissioned between two pages shifts nothing; a
    token is bound to its query; the SDK's list follows the pages."""
    stub, _, _, address = mesh
    made = [stub.Deploy(S.DeployRequest(model=types_pb2.ModelRef(name=name), replicas=5)).deployment.id
            for name in ("iris", "iris-b", "iris-c")]  # fmt: skip
    first = stub.ListDeployments(S.ListDeploymentsRequest(page_size=1))
    assert [d.id for d in first.deployments] == made[:1] and first.next_page_token
    stub.Decommission(S.DecommissionRequest(deployment_id=made[0]))
    second = stub.ListDeployments(S.ListDeploymentsRequest(page_size=1, page_token=first.next_page_token))
    assert [d.id for d in second.deployments] == made[1:2]
    third = stub.ListDeployments(S.ListDeploymentsRequest(page_size=1, page_token=second.next_page_token))
    assert [d.id for d in third.deployments] == made[2:] and not third.next_page_token
    with pytest.raises(grpc.RpcError) as other_query:
        stub.ListDeployments(S.ListDeploymentsRequest(model_name="iris", page_token=first.next_page_token))
    assert "belongs to a different query" in other_query.value.details()
    with SchedulerClient(address) as client:
        assert [d.id for d in client.list()] == made


def test_the_sdk_sends_big_requests_to_the_replicas_bulk_workers(mesh):
    """A replica's ordinary endpoint refuses requests over the threshold; DeploymentInference
    sends them to the bulk endpoint the scheduler publishes, and a stream carries them only
    when asked to go there."""
    stub, X, model, address = mesh
    deployment = stub.Deploy(S.DeployRequest(model=types_pb2.ModelRef(name="iris"))).deployment
    ready = watch_until(stub, deployment.id, {S.DEPLOYMENT_STATE_READY, S.DEPLOYMENT_STATE_FAILED})[-1].deployment
    assert ready.state == S.DEPLOYMENT_STATE_READY
    assert list(ready.bulk_endpoints) == [ready.replica_status[0].bulk_endpoint] != [""]
    rows = np.resize(X.astype(np.float32), (BULK_THRESHOLD_BYTES // 16 + 1000, X.shape[1]))
    with InferenceClient(ready.endpoints[0]) as direct, pytest.raises(errors.ResourceExhausted):
        direct.infer("iris", {"X": rows})
    with SchedulerClient(address) as scheduler, DeploymentInference(scheduler, deployment.id) as runtime:
        assert np.array_equal(runtime.infer({"X": rows})["label"], model.predict(rows))
        answered = []
        with pytest.raises(errors.InvalidArgument, match=r"stream\(\.\.\., bulk=True\)"):
            for result in runtime.stream(iter([{"X": X[:5]}, {"X": rows}])):
                answered.append(result.request_id)
        assert answered == ["0"]  # what came before the big request was answered
        results = {r.request_id: r for r in runtime.stream(iter([{"X": rows}, {"X": X[:5]}]), bulk=True)}
        assert np.array_equal(results["0"].outputs["label"], model.predict(rows))
        assert np.array_equal(results["1"].outputs["label"], model.predict(X[:5]))
