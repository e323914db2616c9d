"""Shared fixtures: real registry servers on free ports over a real SQLite file, and small
real ONNX models."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from mlaas.client import RegistryClient
from mlaas.services.auth import MeshKey, add_mesh_identities
from mlaas.services.server import MeshServer
from mlaas.services.settings import ServerSettings
from registry_svc.app import build_registry
from registry_svc.settings import RegistrySettings

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def tiny_onnx(features: int = 4, dtype: str = "float", outputs: int = 1, seed: int = 0) -> bytes:
    """A real ONNX model: y = X @ W over a [N, features] input (distinct bytes per seed)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    elem = {"float": TensorProto.FLOAT, "double": TensorProto.DOUBLE}[dtype]
    np_dtype = {"float": np.float32, "double": np.float64}[dtype]
    weights = np.random.default_rng(seed).normal(size=(features, outputs)).astype(np_dtype)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["X", "W"], ["Y"])],
        "tiny",
        [helper.make_tensor_value_info("X", elem, [None, features])],
        [helper.make_tensor_value_info("Y", elem, [None, outputs])],
        [numpy_helper.from_array(weights, "W")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()


@pytest.fixture(scope="session")
def iris_model():
    """(fitted scikit-learn pipeline, X, y) on iris."""
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    X, y = load_iris(return_X_y=True)
    X = X.astype(np.float32)
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)).fit(X, y)
    return model, X, y


@pytest.fixture
def registry_settings(tmp_path) -> RegistrySettings:
    return RegistrySettings(
        server=ServerSettings(port=0, metrics_port=0, shutdown_grace_seconds=2.0),
        data_dir=tmp_path / "data",
    )


@pytest.fixture
def start_registry() -> Iterator[Callable[..., MeshServer]]:
    """Starts registries in this process; every one is stopped at teardown."""
    started: list[MeshServer] = []

    def start(settings: RegistrySettings, **kwargs) -> MeshServer:
        server = build_registry(settings, **kwargs).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop(0)


@pytest.fixture
def registry(start_registry, registry_settings) -> MeshServer:
    return start_registry(registry_settings)


@pytest.fixture
def client(registry) -> Iterator[RegistryClient]:
    with RegistryClient(f"127.0.0.1:{registry.port}") as c:
        yield c


def with_server(settings: RegistrySettings, **changes) -> RegistrySettings:
    return dataclasses.replace(settings, server=dataclasses.replace(settings.server, **changes))


def feedback_record(X: np.ndarray, request_ids: list[str], version: int = 1):
    """A runtime's record of its first len(request_ids) iris rows, each answered class 0."""
    from mlaas.tensors import to_raw
    from mlaas.v1 import monitor_pb2

    rows = len(request_ids)
    datatype, raw = to_raw(X[:rows])
    return monitor_pb2.InferenceRecord(
        request_ids=request_ids, model_version=version,
        inputs=[monitor_pb2.RawTensor(datatype=datatype, shape=[rows, X.shape[1]], data=raw)],
        outputs=[monitor_pb2.RawTensor(datatype="INT64", shape=[rows], data=b"\0" * 8 * rows)],
    )  # fmt: skip


def tool_env(**extra: str) -> dict[str, str]:
    """Environment for child processes: the test venv's tools first on PATH."""
    env = dict(os.environ)
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


# Fixtures that start child processes: a scheduler's runtimes and jobs, a mesh, a standalone runtime.
SPAWNING_FIXTURES = {"parts", "mesh", "runtime"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Marks `spawns` the tests that start child processes through a fixture (the modules that
    start them themselves are marked where they are written)."""
    for item in items:
        if SPAWNING_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.spawns)


@pytest.fixture(autouse=True)
def no_stray_runtimes():
    """After each test, no runtime process the test started may outlive it (a leaked replica is
    a bug in the scheduler's clean-up, and would hold ports and CPU for the rest of the run). A
    warm runtime (the fork server of a scheduler that may serve the next test too) is no replica."""
    import psutil

    me = psutil.Process()
    before = {p.pid for p in me.children(recursive=True)}
    yield
    stray = []
    for child in me.children(recursive=True):
        try:
            command = " ".join(child.cmdline())
            if child.pid not in before and "inference_svc" in command and "inference_svc.warm" not in command:
                stray.append(child)
        except psutil.NoSuchProcess:
            continue
    _, alive = psutil.wait_procs(stray, timeout=30)  # some are still draining, slowly on a busy machine
    alive = [p for p in alive if _running(p)]  # an exited one its parent has not reaped yet has ended
    for process in alive:
        process.kill()
    assert not alive, f"runtime processes outlived the test: {[p.pid for p in alive]}"


def process_memory(pid: int) -> Iterator[bytes]:
    """The readable private mappings of a process, one by one (read as its parent, or root, may)."""
    import re

    with open(f"/proc/{pid}/maps") as maps, open(f"/proc/{pid}/mem", "rb", 0) as mem:
        for line in maps:
            match = re.match(r"([0-9a-f]+)-([0-9a-f]+) r..p ", line)
            if not match:
                continue
            start, end = (int(x, 16) for x in match.groups())
            try:
                mem.seek(start)
                yield mem.read(end - start)
            except (OSError, OverflowError, ValueError):  # a guard page, vsyscall
                continue


def _running(process) -> bool:
    import psutil

    try:
        return process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


@dataclass(frozen=True)
class Identities:
    """A tokens file with tenants alpha and beta and a token per role of the mesh, and the mesh
    key; `token(name)` is the bearer token of a tenant or role."""

    tokens_file: Path
    key_file: Path
    tokens: dict[str, str]

    def token(self, who: str) -> str:
        return self.tokens[who]

    def server(self, **changes) -> ServerSettings:
        return ServerSettings(
            port=0, metrics_port=-1, shutdown_grace_seconds=2, auth_tokens_file=str(self.tokens_file),
            mesh_key_file=str(self.key_file), **changes,
        )  # fmt: skip

    def minted(self, role: str, scope: str, model: str) -> str:
        return MeshKey.from_file(self.key_file).mint(role, scope, model)


@pytest.fixture
def identities(tmp_path) -> Identities:
    tenants = tmp_path / "tenants.yaml"
    tenants.write_text("token-alpha: alpha\ntoken-beta: beta\n")
    roles = add_mesh_identities(tenants, tmp_path)
    tokens = {"alpha": "token-alpha", "beta": "token-beta", **roles}
    return Identities(tmp_path / "mesh-tokens.yaml", tmp_path / "mesh.key", tokens)


def localhost_certificate(directory: Path) -> tuple[Path, Path]:
    """(key, certificate) of a throwaway self-signed certificate for `localhost` (openssl)."""
    key, cert = directory / "key.pem", directory / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
         "-days", "1", "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost"],
        check=True, capture_output=True,
    )  # fmt: skip
    return key, cert
