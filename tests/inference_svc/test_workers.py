"""The workers of one runtime. Repository changes: the worker that receives RepositoryModelLoad
repeats it on its sibling workers (two InferenceServicers in this process on real gRPC ports, so
the test can hold one back the way a slow-starting worker process is). Clients: a connection
lands on one worker, so the SDK opens several."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import sys

import grpc
import numpy as np
import psutil
import pytest

from inference_svc.catalog import Catalog
from inference_svc.dataplane import DataPlane
from inference_svc.feedback import FeedbackTap
from inference_svc.load import ReplicaLoad
from inference_svc.metrics import RuntimeMetrics
from inference_svc.repository import ModelRepository
from inference_svc.servicer import InferenceServicer
from inference_svc.settings import RuntimeSettings
from inference_svc.wire import add_inference_service
from mlaas.inference_client import InferenceClient
from mlaas.oip import open_inference_v2_pb2 as oip
from mlaas.oip import open_inference_v2_pb2_grpc as oip_grpc
from mlaas.services.net import free_port
from mlaas.services.settings import ServerSettings
from tests.conftest import tool_env
from tests.inference_svc.conftest import start_runtime, stop_runtime

pytestmark = pytest.mark.spawns  # see pyproject.toml


def worker(tmp_path, siblings: list[str], roots=()) -> tuple[InferenceServicer, ModelRepository]:
    settings = RuntimeSettings(
        server=ServerSettings.from_env({}, "inference", 0), cache_dir=tmp_path, model_roots=tuple(roots)
    )
    metrics = RuntimeMetrics()
    repository = ModelRepository(settings, metrics)
    feedback = FeedbackTap(16, None)
    plane = DataPlane(settings, repository, feedback, metrics, ReplicaLoad().worker(0))
    return InferenceServicer(Catalog(settings, repository, siblings), plane), repository


@contextlib.asynccontextmanager
async def serving(servicer: InferenceServicer, repository: ModelRepository, port: int):
    server = grpc.aio.server()
    add_inference_service(servicer, server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    try:
        yield
    finally:
        await server.stop(None)
        await repository.close()


def load_request(models_dir) -> oip.RepositoryModelLoadRequest:
    request = oip.RepositoryModelLoadRequest(model_name="iris")
    request.parameters["uri"].string_param = f"file://{models_dir / 'iris.onnx'}"
    return request


def test_a_load_waits_for_a_sibling_that_is_still_starting(tmp_path, models_dir):
    async def scenario():
        late_port, first_port = free_port(), free_port()
        first, first_repo = worker(tmp_path, [f"127.0.0.1:{late_port}"], [models_dir])
        late, late_repo = worker(tmp_path, [f"127.0.0.1:{first_port}"], [models_dir])
        first_address = f"127.0.0.1:{first_port}"
        async with serving(first, first_repo, first_port), grpc.aio.insecure_channel(first_address) as channel:
            stub = oip_grpc.GRPCInferenceServiceStub(channel)
            load = asyncio.ensure_future(stub.RepositoryModelLoad(load_request(models_dir), timeout=30))
            await asyncio.sleep(1.0)  # the sibling is not listening yet
            assert not load.done()
            async with serving(late, late_repo, late_port):
                await load
                assert first_repo.get("iris") and late_repo.get("iris")

    asyncio.run(scenario())


def test_a_sibling_refusal_is_reported_with_its_own_status(tmp_path, models_dir):
    async def scenario():
        sibling_port, first_port = free_port(), free_port()
        first, first_repo = worker(tmp_path, [f"127.0.0.1:{sibling_port}"], [tmp_path])
        sibling, sibling_repo = worker(tmp_path / "other", [], [tmp_path])
        artifact = tmp_path / "short-lived.onnx"
        artifact.write_bytes((models_dir / "iris.onnx").read_bytes())
        request = oip.RepositoryModelLoadRequest(model_name="iris")
        request.parameters["uri"].string_param = f"file://{artifact}"
        load_here = first_repo.load_uri

        async def load_then_remove(name, uri, confined):  # the sibling then finds the artifact gone
            await load_here(name, uri, confined)
            artifact.unlink()

        first_repo.load_uri = load_then_remove
        async with (
            serving(first, first_repo, first_port),
            serving(sibling, sibling_repo, sibling_port),
            grpc.aio.insecure_channel(f"127.0.0.1:{first_port}") as channel,
        ):
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await oip_grpc.GRPCInferenceServiceStub(channel).RepositoryModelLoad(request, timeout=30)
        assert refused.value.code() not in (grpc.StatusCode.UNKNOWN, grpc.StatusCode.OK)
        assert f"failed on the worker at 127.0.0.1:{sibling_port}" in refused.value.details()

    asyncio.run(scenario())


def test_a_client_opens_the_connections_it_is_asked_for(tmp_path, models_dir, iris_model):
    model, X, _ = iris_model
    rt = start_runtime(tmp_path, "--workers", "2", "--model-uri", f"iris=file://{models_dir / 'iris.onnx'}")
    port = int(rt.address.rsplit(":", 1)[1])
    try:
        with InferenceClient(rt.address, connections=4) as client:
            for _ in range(8):  # every connection serves calls, in turn
                assert np.array_equal(client.infer("iris", {"X": X[:3]})["label"], model.predict(X[:3]))
            me = psutil.Process()
            connections = getattr(me, "net_connections", me.connections)  # psutil 6 renamed it; kserve pins <6
            mine = [
                c for c in connections("tcp")
                if c.raddr and c.raddr.port == port and c.status == psutil.CONN_ESTABLISHED
            ]  # fmt: skip
            assert len(mine) == 4
    finally:
        stop_runtime(rt)


def test_a_runtime_refuses_a_port_another_process_holds(tmp_path, models_dir):
    """Its workers share their port (SO_REUSEPORT): handed a port in use, a runtime must not
    silently share it with whatever holds it."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        command = [sys.executable, "-m", "inference_svc", "--port", str(port), "--metrics-port", "-1",
                   "--model-uri", f"iris=file://{models_dir / 'iris.onnx'}"]  # fmt: skip
        done = subprocess.run(command, capture_output=True, text=True, timeout=60,
                              env=tool_env(MLAAS_DATA_DIR=str(tmp_path)))  # fmt: skip
    assert done.returncode == 1
    assert f"port {port} is in use" in done.stderr


def test_a_stopped_runtime_leaves_no_metrics_files_behind(tmp_path, models_dir):
    rt = start_runtime(tmp_path, "--workers", "2", "--model-uri", f"iris=file://{models_dir / 'iris.onnx'}")
    worker = psutil.Process(rt.process.pid).children()[0]
    metrics_dir = worker.environ()["PROMETHEUS_MULTIPROC_DIR"]
    assert os.path.isdir(metrics_dir)
    assert stop_runtime(rt) == 0
    assert not os.path.exists(metrics_dir)


def test_a_killed_runtimes_metrics_directory_is_removed_by_the_next(tmp_path, models_dir):
    """A runtime killed with SIGKILL leaves its Prometheus directory (named after its pid) in
    the temporary directory; the next runtime to start removes it, and not a living one's."""
    import tempfile
    from pathlib import Path

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    orphan = Path(tempfile.mkdtemp(prefix=f"mlaas-runtime-metrics-{dead.stdout.strip()}-"))
    living = Path(tempfile.mkdtemp(prefix=f"mlaas-runtime-metrics-{os.getpid()}-"))
    try:
        rt = start_runtime(tmp_path, "--workers", "1", "--model-uri", f"iris=file://{models_dir / 'iris.onnx'}")
        stop_runtime(rt)
        assert not orphan.exists() and living.exists()
    finally:
        living.rmdir()
