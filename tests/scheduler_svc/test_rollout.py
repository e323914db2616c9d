"""Scale and UpdateDeployment on real runtimes: replicas are added beside the old ones, the
endpoints switch once the new ones serve, the old ones drain, and clients that retry through
`DeploymentInference` see no failed request."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import threading
import time

import grpc
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from mlaas.client import RegistryClient, SchedulerClient
from mlaas.export import register_sklearn
from mlaas.inference_client import DeploymentInference, InferenceClient
from mlaas.oip import open_inference_v2_pb2 as oip
from mlaas.oip import open_inference_v2_pb2_grpc as oip_grpc
from mlaas.services.net import wait_healthy
from mlaas.v1 import scheduler_pb2, types_pb2
from scheduler_svc.backends import ReplicaSpec, ReplicaStatus, RollState
from scheduler_svc.backends.local import LocalBackend, _alive
from scheduler_svc.replica_models import ReplicaModels
from scheduler_svc.replicas import endpoint_port
from tests.conftest import tool_env
from tests.scheduler_svc.conftest import ONE_CPU, stub_of, watch_until

S = scheduler_pb2


def ready_deployment(stub, name="iris", replicas=1):
    deployment = stub.Deploy(S.DeployRequest(model=types_pb2.ModelRef(name=name), replicas=replicas)).deployment
    events = watch_until(stub, deployment.id, {S.DEPLOYMENT_STATE_READY, S.DEPLOYMENT_STATE_FAILED})
    assert events[-1].event.state == S.DEPLOYMENT_STATE_READY, events[-1].event.detail
    return events[-1].deployment


def rows_served(endpoint: str) -> int:
    with grpc.insecure_channel(endpoint) as channel:
        stats = oip_grpc.GRPCInferenceServiceStub(channel).ModelStatistics(oip.ModelStatisticsRequest(name="iris"))
    return sum(s.inference_count for s in stats.model_stats)


def test_scale_out_balances_and_scale_in_drains(mesh):
    stub, X, model, address = mesh
    deployment = ready_deployment(stub)
    first_pid = int(deployment.replica_status[0].handle)
    with SchedulerClient(address) as scheduler:
        assert scheduler.scale(deployment.id, 2).state == S.DEPLOYMENT_STATE_UPDATING
        scaled = scheduler.wait_settled(deployment.id)
        assert scaled.state == S.DEPLOYMENT_STATE_READY and len(scaled.endpoints) == 2
        assert deployment.endpoints[0] in scaled.endpoints  # the serving replica stayed
        with DeploymentInference(scheduler, deployment.id) as runtime:
            # Round robin passes over a connection still being made: on a busy machine the first
            # calls may all go to one replica until the other's is up.
            deadline = time.monotonic() + 60
            while min(rows_served(e) for e in scaled.endpoints) == 0:
                assert time.monotonic() < deadline, [rows_served(e) for e in scaled.endpoints]
                runtime.infer({"X": X[:3]})
            before = [rows_served(e) for e in scaled.endpoints]
            for _ in range(20):
                assert np.array_equal(runtime.infer({"X": X[:3]})["label"], model.predict(X[:3]))
        counts = [rows_served(e) - b for e, b in zip(scaled.endpoints, before, strict=True)]
        assert sum(counts) == 20 * 3 and min(counts) >= 5 * 3, counts  # round robin over both replicas

        assert scheduler.scale(deployment.id, 3).state == S.DEPLOYMENT_STATE_UPDATING  # 1 CPU each: no room
        refused = scheduler.wait_settled(deployment.id)
        assert refused.state == S.DEPLOYMENT_STATE_READY and refused.replicas == 2 and len(refused.endpoints) == 2
        history = [e.event.detail for e in watch_until(stub, deployment.id, {S.DEPLOYMENT_STATE_READY}, "given up")]
        assert "update given up, still serving version 1 on 2 replica(s): not placed" in history[-1]

    command = [sys.executable, "-m", "mlaas.cli", "scale", deployment.id, "1", "--wait", "--json"]
    command += ["--scheduler", address]
    result = subprocess.run(command, capture_output=True, text=True, env=tool_env(), timeout=120)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["state"] == "DEPLOYMENT_STATE_READY"
    shrunk = stub.GetDeployment(S.GetDeploymentRequest(deployment_id=deployment.id)).deployment
    assert shrunk.replicas == 1 and len(shrunk.endpoints) == len(shrunk.replica_status) == 1
    gone = [r for r in scaled.replica_status if r.id != shrunk.replica_status[0].id]
    assert not _alive(int(gone[0].handle))
    nodes = {n.name: n for n in stub.ListNodes(S.ListNodesRequest()).nodes}
    assert nodes["node-a"].allocated.cpu_millicores == 1000
    assert _alive(first_pid) == (shrunk.replica_status[0].handle == str(first_pid))


def register_iris_v2(parts, X, y) -> None:
    with RegistryClient(parts.registry_address) as registry:  # version 2: another classifier
        register_sklearn(registry, LogisticRegression(C=0.01, max_iter=300).fit(X, y), "iris", X,
                         run_resources=ONE_CPU)  # fmt: skip


def update_under_load(stub, address, deployment, X) -> tuple[scheduler_pb2.Deployment, list, list, list]:
    """UpdateDeployment to iris:2 while a stream and a unary client keep asking through
    DeploymentInference; (the settled deployment, stream answers, unary answers, failures)."""
    stop = threading.Event()
    streamed, unary, failures = [], [], []

    def rows():
        for i in range(10**9):
            if stop.is_set():
                return
            yield {"X": X[i % 150 : i % 150 + 1]}
            time.sleep(0.001)

    def stream_load():
        with SchedulerClient(address) as scheduler, DeploymentInference(scheduler, deployment.id) as runtime:
            try:
                streamed.extend(runtime.stream(rows()))
            except Exception as err:  # the assertion below reports it
                failures.append(("stream", err))

    def unary_load():
        with SchedulerClient(address) as scheduler, DeploymentInference(scheduler, deployment.id) as runtime:
            while not stop.is_set():
                try:
                    unary.append(runtime.infer({"X": X[:2]})["label"])
                except Exception as err:
                    failures.append(("unary", err))

    threads = [threading.Thread(target=stream_load), threading.Thread(target=unary_load)]
    for thread in threads:
        thread.start()
    try:
        deadline = time.monotonic() + 30
        while len(streamed) + len(unary) < 100 and time.monotonic() < deadline and not failures:
            time.sleep(0.05)  # both clients are serving on version 1
        with SchedulerClient(address) as scheduler:
            assert scheduler.update(deployment.id, "iris:2").state == S.DEPLOYMENT_STATE_UPDATING
            rolled = scheduler.wait_settled(deployment.id)
        served = len(unary)
        while len(unary) < served + 20 and time.monotonic() < deadline + 60 and not failures:
            time.sleep(0.05)  # load on the new version
    finally:
        stop.set()
        for thread in threads:
            thread.join(60)
    return rolled, streamed, unary, failures


def assert_rolled_without_failure(rolled, streamed: list, failures: list) -> list[str]:
    """The deployment serves version 2 on its one replica, and the stream that was open during
    the update was answered once per request, by version 1 and then version 2, with no failure;
    the versions that answered, in the order the requests were sent (a stream's answers may come
    out of order: a short call runs at once while an earlier one waits in a batch)."""
    assert failures == []
    assert rolled.state == S.DEPLOYMENT_STATE_READY and rolled.model.version == 2
    assert [r.model_version for r in rolled.replica_status] == [2]
    assert all(r.error == "" for r in streamed)
    assert sorted(int(r.request_id) for r in streamed) == list(range(len(streamed)))  # each answered once
    versions = [r.model_version for r in sorted(streamed, key=lambda r: int(r.request_id))]
    assert versions[0] == "1" and versions[-1] == "2", (len(streamed), set(versions))
    return versions


def test_update_swaps_the_version_inside_the_running_replica_under_load(mesh, parts, iris_model):
    """A change of version only is a hot swap: the replica's process and endpoint stay, the
    stream that was open goes on and is answered by version 1, then by version 2, with no
    failed request and no answer twice."""
    stub, X, _, address = mesh
    deployment = ready_deployment(stub)
    pid = int(deployment.replica_status[0].handle)
    register_iris_v2(parts, X, iris_model[2])
    rolled, streamed, unary, failures = update_under_load(stub, address, deployment, X)
    versions = assert_rolled_without_failure(rolled, streamed, failures)
    assert rolled.endpoints == deployment.endpoints and rolled.replica_status[0].handle == str(pid)
    assert _alive(pid)  # the same process serves version 2
    assert versions == sorted(versions)  # once switched, no later request is answered by the old version
    assert len(unary) > 20
    events = [e.event.detail for e in watch_until(stub, deployment.id, {S.DEPLOYMENT_STATE_READY}, "rolled")]
    assert "rolling from version 1 to 2" in events and "swapped 1 replica(s) to version 2 in place" in events
    assert events[-1] == "rolled to version 2"
    with InferenceClient(rolled.endpoints[0]) as runtime:
        assert runtime.metadata("iris").versions == ["2"]
    with grpc.insecure_channel(rolled.endpoints[0]) as channel:
        config = oip_grpc.GRPCInferenceServiceStub(channel).ModelConfig(oip.ModelConfigRequest(name="iris")).config
    with RegistryClient(parts.registry_address) as registry:
        assert config.parameters["sha256"].string_value == registry.get("iris:2").artifact.sha256


def test_a_replica_that_does_not_swap_is_replaced_by_a_new_one_under_load(mesh, parts, iris_model, monkeypatch):
    """The swap's failure is injected (a runtime that refuses the load: the swap reports no
    replica swapped); the rollout then starts a replica of version 2 beside the old one, switches
    the endpoints and drains the old one, with no failed request."""
    stub, X, _, address = mesh
    monkeypatch.setattr(ReplicaModels, "swap", lambda self, deployment, replicas, version: set())
    deployment = ready_deployment(stub)
    old_pid = int(deployment.replica_status[0].handle)
    register_iris_v2(parts, X, iris_model[2])
    rolled, streamed, _, failures = update_under_load(stub, address, deployment, X)
    assert_rolled_without_failure(rolled, streamed, failures)
    assert rolled.endpoints != deployment.endpoints
    assert not _alive(old_pid)  # drained and gone
    events = [e.event.detail for e in watch_until(stub, deployment.id, {S.DEPLOYMENT_STATE_READY}, "rolled")]
    assert "rolling from version 1 to 2" in events and events[-1] == "rolled to version 2"


def test_scale_and_update_refusals(mesh):
    stub, _, _, _ = mesh
    queued = stub.Deploy(S.DeployRequest(model=types_pb2.ModelRef(name="iris-b"))).deployment
    cases = [
        (stub.Scale, S.ScaleRequest(deployment_id=queued.id, replicas=0), grpc.StatusCode.INVALID_ARGUMENT,
         "replicas must be between 1 and 64"),
        (stub.Scale, S.ScaleRequest(deployment_id="d-nope", replicas=1), grpc.StatusCode.NOT_FOUND, "d-nope"),
        (stub.UpdateDeployment, S.UpdateDeploymentRequest(deployment_id=queued.id,
         model=types_pb2.ModelRef(name="iris")), grpc.StatusCode.INVALID_ARGUMENT, "serves iris-b; deploy iris"),
        (stub.UpdateDeployment, S.UpdateDeploymentRequest(deployment_id=queued.id,
         model=types_pb2.ModelRef(version=9)), grpc.StatusCode.NOT_FOUND, "iris-b:9"),
    ]  # fmt: skip
    for method, request, code, message in cases:
        with pytest.raises(grpc.RpcError) as info:
            method(request)
        assert info.value.code() == code and message in info.value.details(), info.value.details()
    ready = watch_until(stub, queued.id, {S.DEPLOYMENT_STATE_READY})[-1].deployment
    stub.Scale(S.ScaleRequest(deployment_id=ready.id, replicas=2))
    with pytest.raises(grpc.RpcError) as info:  # one change at a time
        stub.Scale(S.ScaleRequest(deployment_id=ready.id, replicas=1))
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "is UPDATING; only a READY one can change" in info.value.details()
    assert os.environ.get("MLAAS_NODES") is None  # the fixture's nodes, not the environment's


class RestartingBackend(LocalBackend):
    """Stands in for a platform that rolls a replica itself (Kubernetes' Deployment rolling
    update, which cannot run here): rolling restarts the replica's process on the same port with
    the new model, and the handle the scheduler keeps stays valid, as a Deployment name does.
    Versions in `broken_versions` never become ready, like pods that crash-loop."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.broken_versions: set[str] = set()
        self._current: dict[str, tuple[ReplicaStatus, str]] = {}  # replica id -> (process, version)

    def _process(self, replica: ReplicaStatus) -> ReplicaStatus:
        return self._current.get(replica.replica_id, (replica, ""))[0]

    def create(self, spec: ReplicaSpec) -> ReplicaStatus:  # a restart: the record has the new handle
        self._current.pop(spec.replica_id, None)
        return super().create(spec)

    def roll(self, replica: ReplicaStatus, spec: ReplicaSpec) -> None:
        super().delete(self._process(replica))
        started = super().create(dataclasses.replace(spec, port=endpoint_port(replica.endpoint)))
        self._current[replica.replica_id] = (started, spec.model_ref.partition(":")[2])

    def roll_state(self, replica: ReplicaStatus) -> RollState:
        _, version = self._current[replica.replica_id]
        if version in self.broken_versions:
            return RollState(problem=f"pods of version {version} are crash-looping")
        try:
            wait_healthy(replica.endpoint, timeout=0.2)
        except TimeoutError:
            return RollState()
        return RollState(done=True)

    def status(self, replica: ReplicaStatus) -> ReplicaStatus:
        return dataclasses.replace(super().status(self._process(replica)), handle=replica.handle)

    def delete(self, replica: ReplicaStatus, grace_seconds: float = 10.0) -> None:
        super().delete(self._process(replica), grace_seconds)


def test_a_backend_that_rolls_in_place_keeps_the_endpoint(parts, iris_model):
    _, X, y = iris_model
    scheduler_server = parts.start(make_backend=RestartingBackend.for_settings)
    address = f"127.0.0.1:{scheduler_server.server.port}"
    second = LogisticRegression(C=0.01, max_iter=300).fit(X, y)
    with grpc.insecure_channel(address) as channel, SchedulerClient(address) as scheduler:
        stub = stub_of(channel)
        deployment = ready_deployment(stub)
        with RegistryClient(parts.registry_address) as registry:
            for C in (0.01, 0.02):  # versions 2 and 3
                register_sklearn(registry, LogisticRegression(C=C, max_iter=300).fit(X, y), "iris", X,
                                 run_resources=ONE_CPU)  # fmt: skip
        replica = deployment.replica_status[0]
        assert scheduler.update(deployment.id, "iris:2").state == S.DEPLOYMENT_STATE_UPDATING
        rolled = scheduler.wait_settled(deployment.id)
        assert rolled.state == S.DEPLOYMENT_STATE_READY and rolled.model.version == 2
        assert list(rolled.endpoints) == list(deployment.endpoints)  # no new replica: the same one, in place
        assert [(r.id, r.model_version) for r in rolled.replica_status] == [(replica.id, 2)]
        with InferenceClient(rolled.endpoints[0]) as runtime:
            assert runtime.metadata("iris").versions == ["2"]
            assert np.array_equal(runtime.infer("iris", {"X": X})["label"], second.predict(X))
        events = [e.event.detail for e in watch_until(stub, deployment.id, {S.DEPLOYMENT_STATE_READY}, "rolled")]
        assert "rolling 1 replica(s) to version 2 in place" in events and events[-1] == "rolled to version 2"

        scheduler_server.backend.broken_versions.add("3")
        scheduler.update(deployment.id, "iris:3")
        refused = scheduler.wait_settled(deployment.id)
        assert refused.state == S.DEPLOYMENT_STATE_READY and refused.model.version == 2
        assert [(r.id, r.model_version) for r in refused.replica_status] == [(replica.id, 2)]
        detail = watch_until(stub, deployment.id, {S.DEPLOYMENT_STATE_READY}, "given up")[-1].event.detail
        assert detail == (
            "update given up, still serving version 2 on 1 replica(s): rolling update failed and was rolled "
            "back: pods of version 3 are crash-looping"
        )
        wait_healthy(refused.endpoints[0], timeout=60)
        with InferenceClient(refused.endpoints[0]) as runtime:  # rolled back: version 2 again
            assert runtime.metadata("iris").versions == ["2"]
