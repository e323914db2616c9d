"""The bulk worker: a runtime started with a bulk port serves requests over the threshold
(4 MiB by default) from a process of their own, kept to a core of its own, while its other
ports refuse them; so a tenant's big requests never hold up another's small ones on the same
event loop or core (bench/interference_bench.py measures the latency). Real runtime processes."""

from __future__ import annotations

import http.client
import json
import os
import queue
import socket
import subprocess
import sys
import time

import grpc
import numpy as np
import psutil
import pytest

from mlaas.errors import FailedPrecondition, InvalidArgument, ResourceExhausted
from mlaas.inference_client import InferenceClient, build_request
from mlaas.message_limits import BULK_THRESHOLD_BYTES
from mlaas.oip import open_inference_v2_pb2 as oip
from mlaas.oip import open_inference_v2_pb2_grpc as oip_grpc
from mlaas.services.net import free_port, wait_healthy
from tests.conftest import tool_env
from tests.inference_svc.conftest import served_once_free, start_runtime, stop_runtime

pytestmark = pytest.mark.spawns  # see pyproject.toml


BIG_ROWS = BULK_THRESHOLD_BYTES // 16 + 1000  # 4 float32 features a row: just over the threshold


@pytest.fixture(scope="module")
def bulk_runtime(tmp_path_factory, models_dir):
    """Two workers and a bulk worker serving iris; RepositoryModelLoad may load from models_dir,
    data references from the runtime's `refs` directory."""
    tmp = tmp_path_factory.mktemp("bulk")
    (tmp / "refs").mkdir()
    bulk_port = free_port()
    rt = start_runtime(
        tmp, "--workers", "2", "--bulk-port", str(bulk_port), "--model-uri", f"iris=file://{models_dir / 'iris.onnx'}",
        env={"MLAAS_MODEL_ROOTS": str(models_dir), "MLAAS_DATA_URI_ROOTS": str(tmp / "refs")},
    )  # fmt: skip
    bulk = f"127.0.0.1:{bulk_port}"
    wait_healthy(bulk)
    yield rt, bulk
    stop_runtime(rt)


def workers_of(rt, bulk_port: int) -> tuple[psutil.Process, list[psutil.Process]]:
    """(the bulk worker, the other workers) of a runtime: the bulk worker listens on the bulk port."""
    workers = [w for w in psutil.Process(rt.process.pid).children() if "spawn_main" in " ".join(w.cmdline())]

    def listens_on_bulk(worker: psutil.Process) -> bool:
        connections = getattr(worker, "net_connections", worker.connections)
        return any(c.laddr.port == bulk_port and c.status == psutil.CONN_LISTEN for c in connections("tcp"))

    bulk = [w for w in workers if listens_on_bulk(w)]
    assert len(bulk) == 1
    return bulk[0], [w for w in workers if w not in bulk]


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
    bulk_worker, others = workers_of(rt, int(bulk.rsplit(":", 1)[1]))
    assert len(others) == 2
    allowed = sorted(os.sched_getaffinity(0))
    expected = allowed[-1:] if len(allowed) >= 2 else allowed
    assert bulk_worker.cpu_affinity() == expected
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


def test_an_input_by_reference_is_read_by_the_bulk_worker_only(bulk_runtime, iris_model):
    """A 66-byte request naming a 24 MB file once made an ordinary worker load it and send a
    30 MB answer beside small requests."""
    rt, bulk = bulk_runtime
    model, X, _ = iris_model
    rows = big_rows(X)
    path = rt.models_dir / "refs" / "rows.npy"
    np.save(path, rows)
    with InferenceClient(rt.address) as interactive, pytest.raises(FailedPrecondition, match="only the runtime's bulk"):
        interactive.infer_reference("iris", "X", "FP32", f"file://{path}")
    with InferenceClient(bulk) as bulk_client:
        assert np.array_equal(
            bulk_client.infer_reference("iris", "X", "FP32", f"file://{path}")["label"], model.predict(rows)
        )


def test_the_bulk_worker_holds_a_bounded_number_of_calls(tmp_path, models_dir, iris_model):
    """Beyond MLAAS_INFERENCE_BULK_CONCURRENCY calls, one is refused as it starts, before its
    message is read: 16 clients of 16 MB requests took an uncapped bulk worker to 3.6 GB."""
    _, X, _ = iris_model
    bulk_port = free_port()
    rt = start_runtime(
        tmp_path, "--workers", "1", "--bulk-port", str(bulk_port),
        "--model-uri", f"iris=file://{models_dir / 'iris.onnx'}",
        env={"MLAAS_INFERENCE_BULK_CONCURRENCY": "1"},
    )  # fmt: skip
    try:
        bulk = f"127.0.0.1:{bulk_port}"
        wait_healthy(bulk)
        with grpc.insecure_channel(bulk) as channel, InferenceClient(bulk) as other:
            stub = oip_grpc.GRPCInferenceServiceStub(channel)

            def open_stream():  # holds the one slot while open
                held: queue.Queue = queue.Queue()
                stream = stub.ModelStreamInfer(iter(held.get, None))
                held.put(build_request("iris", {"X": X[:1]}))
                try:
                    assert next(stream).error_message == ""
                except grpc.RpcError as err:
                    if err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED:
                        raise ResourceExhausted(err.details()) from err
                    raise
                return held, stream

            held, stream = served_once_free(open_stream, "the health check's slot stayed taken")
            with pytest.raises(ResourceExhausted, match="Concurrent RPC limit"):
                other.infer("iris", {"X": X[:1]})
            held.put(None)  # the stream ends: the slot is free again, once the server has closed it
            list(stream)
            answer = served_once_free(lambda: other.infer("iris", {"X": X[:1]}), "the stream's slot stayed taken")
            assert answer["label"].shape == (1,)
    finally:
        stop_runtime(rt)


def test_a_worker_that_exits_even_cleanly_stops_the_runtime(tmp_path, models_dir):
    """Its port would go unserved while the runtime looked healthy: the bulk worker stopped with
    SIGTERM (exit 0) left a READY deployment publishing a dead bulk endpoint."""
    bulk_port = free_port()
    rt = start_runtime(
        tmp_path, "--workers", "1", "--bulk-port", str(bulk_port),
        "--model-uri", f"iris=file://{models_dir / 'iris.onnx'}",
    )  # fmt: skip
    wait_healthy(f"127.0.0.1:{bulk_port}")
    workers_of(rt, bulk_port)[0].terminate()
    assert rt.process.wait(30) == 1


def test_an_idle_stream_holds_a_bulk_call_for_a_bounded_time(tmp_path, models_dir, iris_model):
    """Two idle streams once shut every big request out for as long as they stayed open: a
    connection to the bulk port now lives MLAAS_INFERENCE_BULK_CONNECTION_SECONDS, then as long
    again for its calls to end."""
    _, X, _ = iris_model
    bulk_port = free_port()
    rt = start_runtime(
        tmp_path, "--workers", "1", "--bulk-port", str(bulk_port),
        "--model-uri", f"iris=file://{models_dir / 'iris.onnx'}",
        env={"MLAAS_INFERENCE_BULK_CONCURRENCY": "1", "MLAAS_INFERENCE_BULK_CONNECTION_SECONDS": "1"},
    )  # fmt: skip
    try:
        bulk = f"127.0.0.1:{bulk_port}"
        wait_healthy(bulk)
        with grpc.insecure_channel(bulk) as channel:
            stream = oip_grpc.GRPCInferenceServiceStub(channel).ModelStreamInfer(
                iter(queue.Queue().get, None), timeout=15
            )
            started = time.monotonic()
            with pytest.raises(grpc.RpcError):  # never sends, never closes: the server ends it
                list(stream)
            assert time.monotonic() - started < 10
        # The cut stream's slot is given back just after its client saw the end: within a bound
        # (a busy machine once took longer than the next call), the port serves another caller.
        with InferenceClient(bulk) as other:
            answer = served_once_free(lambda: other.infer("iris", {"X": X[:1]}), "the cut stream holds the only call")
            assert answer["label"].shape == (1,)
    finally:
        stop_runtime(rt)


def test_a_request_id_is_bounded_like_a_labels(bulk_runtime, iris_model):
    """Its feedback repeats it once per row: a 2,000-character id on a 500,000-row request took
    a worker to 4.4 GB building the message."""
    rt, _ = bulk_runtime
    _, X, _ = iris_model
    with InferenceClient(rt.address) as client, pytest.raises(InvalidArgument, match="at most 256"):
        client.infer("iris", {"X": X[:2]}, request_id="x" * 257)
