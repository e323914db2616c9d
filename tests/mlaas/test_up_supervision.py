"""`mlaas up` as an unlucky operator meets it: a component killed with SIGKILL is restarted (and
says so), `mlaas up` itself killed with SIGKILL takes its children with it, and a port already
taken is refused at once instead of talking to whatever answers there."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time

import psutil
import pytest

from mlaas.client import RegistryClient, SchedulerClient
from mlaas.errors import MlaasError
from mlaas.export import register_sklearn
from mlaas.inference_client import InferenceClient
from mlaas.services.net import wait_healthy
from mlaas.v1 import scheduler_pb2
from tests.conftest import tiny_onnx, tool_env
from tests.registry_svc.helpers import describe

pytestmark = pytest.mark.spawns  # see pyproject.toml

PORTS = ["--registry-metrics-port", "-1", "--scheduler-port", "0", "--scheduler-metrics-port", "-1",
         "--monitor-port", "0", "--monitor-metrics-port", "-1"]  # fmt: skip


def _up(tmp_path, *args: str) -> subprocess.Popen:
    command = [sys.executable, "-m", "mlaas.cli", "up", "--json", "--data-dir", str(tmp_path / "mesh"), *args]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=tool_env())


def _component(up: subprocess.Popen, module: str) -> psutil.Process | None:
    """The running process of a component (None while it is being restarted)."""
    for child in psutil.Process(up.pid).children():
        try:
            if module in " ".join(child.cmdline()):
                return child
        except psutil.Error:  # a zombie, not reaped yet
            continue
    return None


def _eventually(condition, seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline
        time.sleep(0.1)


def test_a_killed_component_is_restarted_and_keeps_its_state(tmp_path):
    up = _up(tmp_path, "--registry-port", "0", *PORTS)
    try:
        endpoints = json.loads(up.stdout.readline())
        with RegistryClient(endpoints["registry"]) as registry:
            registry.register(tiny_onnx(), describe("kept"))
        first = _component(up, "registry_svc")
        first.kill()
        _eventually(lambda: (_component(up, "registry_svc") or first).pid != first.pid)
        wait_healthy(endpoints["registry"], timeout=60)
        with RegistryClient(endpoints["registry"]) as registry:
            assert registry.get("kept").version == 1
        assert up.poll() is None  # the mesh went on
    finally:
        up.send_signal(signal.SIGINT)
        up.wait(60)
    assert "registry exited with -9; restarting it in 1s" in up.stderr.read()


def test_killing_mlaas_up_takes_its_children_with_it(tmp_path):
    up = _up(tmp_path, "--registry-port", "0", *PORTS)
    json.loads(up.stdout.readline())
    children = psutil.Process(up.pid).children()
    assert len(children) == 4  # redis-server, the registry, the scheduler, the monitor
    up.kill()
    up.wait(10)
    _, alive = psutil.wait_procs(children, timeout=30)
    assert alive == []


def test_a_port_in_use_is_refused_at_once(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        up = _up(tmp_path, "--registry-port", str(port), *PORTS)
        assert up.wait(30) == 1
    assert f"127.0.0.1:{port} (registry) in use: is another mesh running?" in up.stderr.read()


def test_a_killed_redis_is_restarted_with_its_data(tmp_path):
    up = _up(tmp_path, "--registry-port", "0", *PORTS)
    try:
        endpoints = json.loads(up.stdout.readline())
        with SchedulerClient(endpoints["scheduler"]) as scheduler:
            nodes = scheduler.nodes()
        first = _component(up, "redis-server")
        first.kill()
        _eventually(lambda: (_component(up, "redis-server") or first).pid != first.pid)
        with SchedulerClient(endpoints["scheduler"]) as scheduler:  # the scheduler reconnects
            _eventually(lambda: _answers(scheduler))
            assert [n.name for n in scheduler.nodes()] == [n.name for n in nodes]
    finally:
        up.send_signal(signal.SIGINT)
        up.wait(60)
    assert "redis exited; restarted it on port" in up.stderr.read()


def _answers(scheduler) -> bool:
    try:
        scheduler.list()
    except MlaasError:  # Redis not back yet
        return False
    return True


def _serves(scheduler_address: str, deployment_id: str, X) -> bool:
    with SchedulerClient(scheduler_address) as scheduler:
        deployment = scheduler.get(deployment_id)
    if deployment.state != scheduler_pb2.DEPLOYMENT_STATE_READY or not deployment.endpoints:
        return False
    try:
        with InferenceClient(deployment.endpoints[0]) as client:
            return client.infer("iris", {"X": X[:2]})["label"].shape == (2,)
    except MlaasError:
        return False


def test_a_crash_looping_monitor_leaves_the_mesh_serving_and_a_restart_brings_deployments_back(tmp_path, iris_model):
    """The Monitor SIGKILLed 5 times in a row: it is marked failed and tried again later, while
    the registry, the scheduler and every replica keep serving (the supervisor once gave up and
    took the mesh down, and the next start found every deployment DESTROYED). Then `mlaas up`
    is stopped and started again on the same data dir: the READY deployment serves again."""
    model, X, _ = iris_model
    up = _up(tmp_path, "--registry-port", "0", *PORTS)
    try:
        endpoints = json.loads(up.stdout.readline())
        with RegistryClient(endpoints["registry"]) as registry:
            register_sklearn(registry, model, "iris", X)
        with SchedulerClient(endpoints["scheduler"]) as scheduler:
            deployment_id = scheduler.wait_ready(scheduler.deploy("iris").id).id
        for _ in range(5):  # each time as soon as it is back
            _eventually(lambda: _component(up, "monitor_svc") is not None, seconds=60)
            monitor = _component(up, "monitor_svc")
            monitor.kill()
            monitor.wait(30)
        _eventually(lambda: _serves(endpoints["scheduler"], deployment_id, X))
        with RegistryClient(endpoints["registry"]) as registry:
            assert registry.get("iris").version == 1
        assert up.poll() is None
    finally:
        up.send_signal(signal.SIGINT)
        up.wait(60)
    assert "monitor exited with -9 (5 crash(es) in 300s" in up.stderr.read()

    again = _up(tmp_path, "--registry-port", "0", *PORTS)
    try:
        endpoints = json.loads(again.stdout.readline())
        _eventually(lambda: _serves(endpoints["scheduler"], deployment_id, X), seconds=90)
    finally:
        again.send_signal(signal.SIGINT)
        again.wait(60)
