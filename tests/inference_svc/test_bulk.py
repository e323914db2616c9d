"""The bulk worker: a runtime started with a bulk port serves requests over the threshold
(4 MiB by default) from a process of their own, kept to a core of its own, while its other
ports refuse them; so a tenant's big requests never hold up another's small ones on the same
event loop or core (bench/interference_bench.py measures the latency). Real runtime processes."""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import sys

import grpc
import numpy as np
import psutil
import pytest

from mlaas.errors import ResourceExhausted
from mlaas.inference_client import InferenceClient
from mlaas.message_limits import BULK_THRESHOLD_BYTES
from mlaas.oip import open_inference_v2_pb2 as oip
from mlaas.oip import open_inference_v2_pb2_grpc as oip_grpc
from mlaas.services.net import free_port, wait_healthy
from tests.conftest import tool_env
from tests.inference_svc.conftest import start_runtime, stop_runtime

BIG_ROWS = BULK_THRESHOLD_BYTES // 16 + 1000  # 4 float32 features a row: just over the threshold


@pytest.fixture(scope="module")
def bulk_runtime(tmp_path_factory, models_dir):
    """Two workers and a bulk worker serving iris; RepositoryModelLoad may load from models_dir."""
    tmp = tmp_path_factory.mktemp("bulk")
    bulk_port = free_port()
    rt = start_runtime(
        tmp, "--workers", "2", "--bulk-port", str(bulk_port), "--model-uri", f"iris=file://{models_dir / 'iris.onnx'}",
        env={"MLAAS_MODEL_ROOTS": str(models_dir)},
    )  # fmt: skip
    bulk = f"127.0.0.1:{bulk_port}"
    wait_healthy(bulk)
    yield rt, bulk
    stop_runtime(rt)


def big_rows(X: np.ndarray) -> np.ndarray:
    return np.resize(X.astype(np.float32), (BIG_ROWS, X.shape[1]))


def test_big_requests_are_served_by_the_bulk_port_and_refused_by_the_others(bulk_runtime, iris_model):
    rt, bulk = bulk_runtime
    model, X, _ = iris_model
    rows = big_rows(X)
    with InferenceClient(rt.address) as interactive, InferenceClient(bulk) as bulk_client:
        with pytest.raises(ResourceExhausted) as refused:
            interactive.infer("iris", {"X": rows})
        assert f"vs. {BULK_THRESHOLD_BYTES}" in refused.value.message  # gRPC's own limit, before any decoding
        assert np.array_equal(bulk_client.infer("iris", {"X": rows})["label"], model.predict(rows))
        for client in (interactive, bulk_client):  # small requests are welcome on both
            assert np.array_equal(client.infer("iris", {"X": X[:3]})["label"], model.predict(X[:3]))


def test_the_bulk_worker_keeps_to_a_core_of_its_own(bulk_runtime):
    """On a machine with two CPUs or more, the bulk worker runs on the last one only, and the
    other workers may use them all; with one CPU there is nothing to keep apart."""
    rt, bulk = bulk_runtime
    bulk_port = int(bulk.rsplit(":", 1)[1])
    workers = psutil.Process(rt.process.pid).children()
    workers = [w for w in workers if "spawn_main" in " ".join(w.cmdline())]

    def listens_on_bulk(worker: psutil.Process) -> bool:
        connections = getattr(worker, "net_connections", worker.connections)
        return any(c.laddr.port == bulk_port and c.status == psutil.CONN_LISTEN for c in connections("tcp"))

    bulk_workers = [w for w in workers if listens_on_bulk(w)]
    others = [w for w in workers if w not in bulk_workers]
    assert len(bulk_workers) == 1 and len(others) == 2
    allowed = sorted(os.sched_getaffinity(0))
    expected = allowed[-1:] if len(allowed) >= 2 else allowed
    assert bulk_workers[0].cpu_affinity() == expected
    assert all(w.cpu_affinity() == allowed for w in others)


def test_a_model_loaded_through_the_runtime_reaches_the_bulk_worker(bulk_runtime, models_dir, iris_model):
    """RepositoryModelLoad on the ordinary port is repeated on every worker, the bulk one too."""
    rt, bulk = bulk_runtime
    model, X, _ = iris_model
    request = oip.RepositoryModelLoadRequest(model_name="iris-again")
    request.parameters["uri"].string_param = f"file://{models_dir / 'iris.onnx'}"
    with grpc.insecure_channel(rt.address) as channel:
        oip_grpc.GRPCInferenceServiceStub(channel).RepositoryModelLoad(request, timeout=60)
    rows = big_rows(X)
    with InferenceClient(bulk) as bulk_client:
        assert np.array_equal(bulk_client.infer("iris-again", {"X": rows})["label"], model.predict(rows))


def test_a_rest_body_over_the_threshold_is_refused_with_where_to_send_it(bulk_runtime):
    """Answered from the declared length, before the body is read."""
    rt, _ = bulk_runtime
    host, port = rt.http.split(":")
    with socket.create_connection((host, int(port)), timeout=10) as connection:
        head = f"POST /v2/models/iris/infer HTTP/1.1\r\nHost: x\r\nContent-Length: {BULK_THRESHOLD_BYTES + 1}\r\n\r\n"
        connection.sendall(head.encode())
        reply = http.client.HTTPResponse(connection)
        reply.begin()
        assert reply.status == 413
        assert "larger requests go to the runtime's bulk port" in json.loads(reply.read())["error"]


def test_a_bulk_port_that_is_also_the_grpc_port_is_refused(tmp_path, models_dir):
    port = free_port()
    command = [
        sys.executable, "-m", "inference_svc", "--port", str(port), "--bulk-port", str(port),
        "--metrics-port", "-1", "--model-uri", f"iris=file://{models_dir / 'iris.onnx'}",
    ]  # fmt: skip
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=60, env=tool_env(MLAAS_DATA_DIR=str(tmp_path))
    )
    assert done.returncode == 1
    assert f"port {port} is given twice" in done.stderr
