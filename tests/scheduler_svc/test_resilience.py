"""Failures the scheduler must survive, done for real: a replica killed with SIGKILL, a
scheduler process killed with SIGKILL in the middle of a placement, and Redis stopped and
restarted (AOF) with a request still queued."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import grpc
import numpy as np

from mlaas.inference_client import InferenceClient
from mlaas.local.redis_embedded import EmbeddedRedis
from mlaas.services.net import wait_healthy
from mlaas.v1 import scheduler_pb2, types_pb2
from scheduler_svc.backends.local import LocalBackend, _alive
from tests.scheduler_svc.conftest import stub_of, watch_until

S = scheduler_pb2
SETTLED = {S.DEPLOYMENT_STATE_READY, S.DEPLOYMENT_STATE_FAILED}


def test_the_reconcile_loop_restarts_a_killed_replica_on_its_endpoint(mesh):
    stub, X, model, _ = mesh
    deployment = stub.Deploy(S.DeployRequest(model=types_pb2.ModelRef(name="iris"))).deployment
    ready = watch_until(stub, deployment.id, SETTLED)[-1].deployment
    replica = ready.replica_status[0]
    os.kill(int(replica.handle), signal.SIGKILL)
    events = watch_until(stub, deployment.id, {S.DEPLOYMENT_STATE_READY}, detail="serves again")
    details = [e.event.detail for e in events]
    assert f"replica {replica.id} exited with code -9; restart 1 in 0.5s" in details, details
    assert f"replica {replica.id} restarted on {replica.endpoint}" in details
    assert all(e.event.state == S.DEPLOYMENT_STATE_READY for e in events[3:])  # it never stopped being READY
    now = stub.GetDeployment(S.GetDeploymentRequest(deployment_id=deployment.id)).deployment
    restarted = now.replica_status[0]
    assert restarted.restarts == 1 and restarted.ready and restarted.handle != replica.handle
    assert list(now.endpoints) == [replica.endpoint]  # clients keep their address
    with InferenceClient(replica.endpoint) as runtime:
        assert np.array_equal(runtime.infer("iris", {"X": X[:5]})["label"], model.predict(X[:5]))


def _serving_after_restarts(stub, deployment_id: str, restarts: int) -> scheduler_pb2.Replica:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        deployment = stub.GetDeployment(S.GetDeploymentRequest(deployment_id=deployment_id)).deployment
        replica = deployment.replica_status[0]
        if replica.restarts == restarts and replica.ready:
            return replica
        time.sleep(0.1)
    raise AssertionError(f"replica not serving after {restarts} restarts: {replica}")


def test_restart_delays_double_while_a_replica_crash_loops_and_reset_once_it_has_run_a_while(parts):
    scheduler = parts.start(restart_backoff_reset_seconds=4.0)
    with grpc.insecure_channel(f"127.0.0.1:{scheduler.server.port}") as channel:
        stub = stub_of(channel)
        deployment = stub.Deploy(S.DeployRequest(model=types_pb2.ModelRef(name="iris"))).deployment
        replica = watch_until(stub, deployment.id, SETTLED)[-1].deployment.replica_status[0]
        for restarts in (1, 2):  # killed again as soon as it serves: a crash loop
            os.kill(int(replica.handle), signal.SIGKILL)
            replica = _serving_after_restarts(stub, deployment.id, restarts)
        time.sleep(4.5)  # now it has run longer than the reset time
        os.kill(int(replica.handle), signal.SIGKILL)
        _serving_after_restarts(stub, deployment.id, 3)
        events = watch_until(stub, deployment.id, {S.DEPLOYMENT_STATE_READY}, detail="restart 3 in")
    delays = [re.search(r"restart (\d) in ([0-9.]+)s", e.event.detail) for e in events]
    assert [m.groups() for m in delays if m] == [("1", "0.5"), ("2", "1.0"), ("3", "0.5")]


class SelfHealingBackend(LocalBackend):
    """Local processes, declared as a platform that restarts unhealthy replicas itself, as
    Kubernetes does with its liveness probe (no cluster can run here; the test freezes and thaws
    the replica rather than having a kubelet restart it)."""

    restarts_replicas = True


def test_on_a_self_healing_platform_an_unhealthy_replica_only_leaves_the_endpoints(parts):
    address = f"127.0.0.1:{parts.start(make_backend=SelfHealingBackend.for_settings).server.port}"
    with grpc.insecure_channel(address) as channel:
        stub = stub_of(channel)
        deployment = stub.Deploy(S.DeployRequest(model=types_pb2.ModelRef(name="iris"))).deployment
        replica = watch_until(stub, deployment.id, SETTLED)[-1].deployment.replica_status[0]
        os.killpg(int(replica.handle), signal.SIGSTOP)  # the whole runtime stops answering
        try:
            events = watch_until(stub, deployment.id, {S.DEPLOYMENT_STATE_READY}, detail="health checks in a row")
            assert events[-1].event.detail.startswith(f"replica {replica.id} failed 3 health checks in a row")
            assert "out of the endpoints until local has it serving again" in events[-1].event.detail
            assert list(events[-1].deployment.endpoints) == []
        finally:
            os.killpg(int(replica.handle), signal.SIGCONT)
        back = watch_until(stub, deployment.id, {S.DEPLOYMENT_STATE_READY}, detail="serves again")[-1].deployment
        assert list(back.endpoints) == [replica.endpoint]
        assert back.replica_status[0].handle == replica.handle and back.replica_status[0].restarts == 0  # not restarted


def test_a_scheduler_killed_mid_placement_is_finished_by_another(parts, tmp_path):
    """The first scheduler is its own process (`python -m scheduler_svc`), killed with SIGKILL
    once it has started the replica; a second one takes the request over after the claim's
    idle time, removes the half-started replica and places the deployment again."""
    env = dict(
        parts.runtime_env,
        MLAAS_REDIS_URL=parts.redis.url,
        MLAAS_REGISTRY_ADDR=parts.registry_address,
        MLAAS_NODES="node-a:cpu=2,memory=4Gi",
        MLAAS_DATA_DIR=str(tmp_path / "first"),
        MLAAS_SCHEDULER_PORT="0",
        MLAAS_SCHEDULER_METRICS_PORT="-1",
        MLAAS_ACTIVATOR_PORT="0",
        MLAAS_ACTIVATOR_HTTP_PORT="0",
        MLAAS_CLAIM_IDLE_MS="1500",
        MLAAS_PLACEMENT_WORKERS="1",
    )
    log = (tmp_path / "first.log").open("wb")
    first = subprocess.Popen([sys.executable, "-m", "scheduler_svc"], env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        port = _port_from_log(tmp_path / "first.log", first)
        wait_healthy(f"127.0.0.1:{port}", timeout=30)
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = stub_of(channel)
            deployment = stub.Deploy(S.DeployRequest(model=types_pb2.ModelRef(name="iris"))).deployment
            starting = watch_until(stub, deployment.id, {S.DEPLOYMENT_STATE_STARTING})[-1].deployment
    finally:
        first.kill()  # SIGKILL: no clean-up of any kind
        first.wait()
        log.close()
    orphan = int(starting.replica_status[0].handle)
    second = parts.start(claim_idle_ms=1500)
    with grpc.insecure_channel(f"127.0.0.1:{second.server.port}") as channel:
        events = watch_until(stub_of(channel), deployment.id, SETTLED)
    assert events[-1].event.state == S.DEPLOYMENT_STATE_READY, events[-1].event.detail
    assert any(e.event.detail.startswith("taken over by s0-w") for e in events)
    assert not _alive(orphan)  # the half-started replica of the dead scheduler is gone
    with InferenceClient(events[-1].deployment.endpoints[0]) as runtime:
        deadline = time.monotonic() + 30  # READY by the scheduler's health check; one ready call may time out
        while not runtime.ready("iris"):
            assert time.monotonic() < deadline, "the replica placed again never said its model is ready"
            time.sleep(0.2)


def _port_from_log(path, process) -> int:
    """The port the scheduler logs when it starts serving."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and process.poll() is None:
        found = re.search(rb"scheduler listening on [\d.]+:(\d+)", path.read_bytes())
        if found:
            return int(found.group(1))
        time.sleep(0.1)
    raise AssertionError(f"the scheduler did not start: {path.read_text()[-2000:]}")


def test_a_queued_request_survives_a_redis_restart(parts, tmp_path):
    idle = parts.start(placement_workers=0)  # accepts requests, places none
    with grpc.insecure_channel(f"127.0.0.1:{idle.server.port}") as channel:
        deployment = stub_of(channel).Deploy(S.DeployRequest(model=types_pb2.ModelRef(name="iris"))).deployment
    idle.stop(0)
    port = int(parts.redis.url.rsplit(":", 1)[1].split("/")[0])
    parts.redis.stop()  # a clean stop: the AOF holds the queue and the deployment
    parts.redis = EmbeddedRedis(tmp_path / "redis", port=port).start()
    worker = parts.start()
    with grpc.insecure_channel(f"127.0.0.1:{worker.server.port}") as channel:
        events = watch_until(stub_of(channel), deployment.id, SETTLED)
    assert [e.event.state for e in events] == [
        S.DEPLOYMENT_STATE_QUEUED, S.DEPLOYMENT_STATE_PLACING, S.DEPLOYMENT_STATE_STARTING, S.DEPLOYMENT_STATE_READY,
    ]  # fmt: skip
