"""`python -m registry_svc` as a real child process: reflection through grpcurl, Prometheus
metrics, and a graceful SIGTERM that lets an in-flight upload finish."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request

import pytest

from mlaas import errors
from mlaas.client import RegistryClient
from mlaas.services.net import free_port, wait_healthy
from mlaas.v1 import registry_pb2
from tests.conftest import tiny_onnx, tool_env
from tests.registry_svc.helpers import describe

pytestmark = pytest.mark.spawns  # see pyproject.toml


@pytest.fixture
def registry_process(tmp_path):
    port, metrics_port = free_port(), free_port()
    env = tool_env(
        MLAAS_DATA_DIR=str(tmp_path / "data"),
        MLAAS_REGISTRY_PORT=str(port),
        MLAAS_REGISTRY_METRICS_PORT=str(metrics_port),
        MLAAS_SHUTDOWN_GRACE_SECONDS="20",
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "registry_svc"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        wait_healthy(f"127.0.0.1:{port}", timeout=60)
        yield process, port, metrics_port
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()


def grpcurl(*args: str) -> str:
    result = subprocess.run(["grpcurl", *args], capture_output=True, text=True, env=tool_env(), timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_grpcurl_lists_and_calls_through_reflection(registry_process):
    _, port, _ = registry_process
    services = grpcurl("-plaintext", f"127.0.0.1:{port}", "list").split()
    assert "mlaas.v1.RegistryService" in services
    assert "grpc.health.v1.Health" in services
    with RegistryClient(f"127.0.0.1:{port}") as client:
        client.register(tiny_onnx(), describe("via-grpcurl"))
    reply = json.loads(
        grpcurl(
            "-plaintext",
            "-d",
            '{"task": "TASK_CLASSIFICATION"}',
            f"127.0.0.1:{port}",
            "mlaas.v1.RegistryService/FindModels",
        )
    )
    assert reply["results"][0]["model"]["description"]["name"] == "via-grpcurl"


def test_prometheus_metrics_count_rpcs(registry_process):
    _, port, metrics_port = registry_process
    with RegistryClient(f"127.0.0.1:{port}") as client:
        client.find()
        with pytest.raises(errors.NotFound):
            client.get("missing")
    text = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).read().decode()
    assert 'mlaas_grpc_requests_total{code="OK",method="FindModels",service="registry"} 1.0' in text
    assert 'mlaas_grpc_requests_total{code="NOT_FOUND",method="GetModel",service="registry"} 1.0' in text
    assert "mlaas_grpc_request_seconds_bucket" in text


def test_sigterm_lets_an_in_flight_upload_finish(registry_process, tmp_path):
    process, port, _ = registry_process
    artifact = tiny_onnx(seed=5)
    halfway = threading.Event()
    result: dict = {}

    def slow_upload():
        def messages():
            yield registry_pb2.RegisterModelRequest(description=describe("graceful"))
            for i in range(0, len(artifact), 16):
                if i == 16 * 3:
                    halfway.set()
                    time.sleep(1.0)  # SIGTERM arrives while the call is in flight
                yield registry_pb2.RegisterModelRequest(artifact_chunk=artifact[i : i + 16])

        import grpc

        from mlaas.v1 import registry_pb2_grpc

        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            try:
                result["model"] = registry_pb2_grpc.RegistryServiceStub(channel).RegisterModel(messages(), timeout=30)
            except grpc.RpcError as err:
                result["error"] = err

    thread = threading.Thread(target=slow_upload)
    thread.start()
    assert halfway.wait(30)
    # The server is handling the call once its staging file exists (a call a loaded server has
    # not started yet is one grpc cancels at shutdown, whatever the grace: not this test's point).
    deadline = time.monotonic() + 30
    while not list((tmp_path / "data").rglob("*.part")):
        assert time.monotonic() < deadline, "the upload never reached the registry"
        time.sleep(0.01)
    os.kill(process.pid, signal.SIGTERM)
    thread.join(60)
    assert "error" not in result, result.get("error")
    assert result["model"].model.version == 1
    assert process.wait(30) == 0
