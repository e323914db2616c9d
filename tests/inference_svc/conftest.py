"""Real runtimes (`python -m inference_svc`) on free ports, over real ONNX models."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from mlaas.errors import ResourceExhausted
from mlaas.export import sklearn_to_onnx
from mlaas.services.net import free_port, wait_healthy, wait_listening
from tests.conftest import tool_env

# OIP datatype -> (ONNX element type, numpy dtype) for the identity model
DTYPES = {
    "BOOL": (TensorProto.BOOL, np.bool_),
    "INT8": (TensorProto.INT8, np.int8),
    "INT16": (TensorProto.INT16, np.int16),
    "INT32": (TensorProto.INT32, np.int32),
    "INT64": (TensorProto.INT64, np.int64),
    "UINT8": (TensorProto.UINT8, np.uint8),
    "UINT16": (TensorProto.UINT16, np.uint16),
    "UINT32": (TensorProto.UINT32, np.uint32),
    "UINT64": (TensorProto.UINT64, np.uint64),
    "FP16": (TensorProto.FLOAT16, np.float16),
    "FP32": (TensorProto.FLOAT, np.float32),
    "FP64": (TensorProto.DOUBLE, np.float64),
    "BYTES": (TensorProto.STRING, np.object_),
}


def identity_model(path: Path, datatypes=tuple(DTYPES)) -> Path:
    """One Identity per datatype: input in_<TYPE> [N, 3] -> output out_<TYPE>."""
    nodes, inputs, outputs = [], [], []
    for name in datatypes:
        elem = DTYPES[name][0]
        nodes.append(helper.make_node("Identity", [f"in_{name}"], [f"out_{name}"]))
        inputs.append(helper.make_tensor_value_info(f"in_{name}", elem, [None, 3]))
        outputs.append(helper.make_tensor_value_info(f"out_{name}", elem, [None, 3]))
    model = helper.make_model(
        helper.make_graph(nodes, "identity", inputs, outputs), opset_imports=[helper.make_opsetid("", 17)]
    )
    model.ir_version = 8
    onnx.save(model, path)
    return path


def fixed_batch_model(path: Path) -> Path:
    """A model whose input is exactly [1, 4] (no batch dimension to stack on)."""
    graph = helper.make_graph(
        [helper.make_node("ReduceSum", ["X", "axes"], ["Y"], keepdims=1)],
        "fixed",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [1, 1])],
        [helper.make_tensor("axes", TensorProto.INT64, [1], [1])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


@dataclass
class Runtime:
    address: str
    metrics_port: int
    process: subprocess.Popen
    models_dir: Path
    http: str  # host:port of its REST endpoint

    def channel(self) -> grpc.Channel:
        return grpc.insecure_channel(self.address)


def start_runtime(
    tmp: Path, *args: str, env: dict | None = None, timeout: float = 90, wrapper: tuple[str, ...] = ()
) -> Runtime:
    """A standalone runtime on free ports; `wrapper`: a command it runs under (e.g. prlimit)."""
    port, metrics_port, http_port = free_port(), free_port(), free_port()
    command = [
        *wrapper, sys.executable, "-m", "inference_svc", "--port", str(port), "--metrics-port", str(metrics_port),
        "--http-port", str(http_port), *args,
    ]  # fmt: skip
    process = subprocess.Popen(
        command,
        env=tool_env(MLAAS_DATA_DIR=str(tmp / "data"), **(env or {})),
        stdout=subprocess.DEVNULL,
        stderr=open(tmp / f"runtime-{port}.log", "wb"),  # noqa: SIM115 - closed with the process
    )
    try:
        wait_healthy(f"127.0.0.1:{port}", timeout=timeout)
        wait_listening(http_port)  # a worker opens REST just after gRPC
    except TimeoutError:
        process.kill()
        raise AssertionError((tmp / f"runtime-{port}.log").read_text()) from None
    return Runtime(f"127.0.0.1:{port}", metrics_port, process, tmp, f"127.0.0.1:{http_port}")


def stop_runtime(runtime: Runtime) -> int:
    runtime.process.terminate()
    try:
        return runtime.process.wait(30)
    except subprocess.TimeoutExpired:
        runtime.process.kill()
        return runtime.process.wait()


def served_once_free(call, holder: str, seconds: float = 10.0):
    """call(), again while RESOURCE_EXHAUSTED refuses it: a bulk worker's call slot is free only
    once the server has ended the call that held it, which can be after that call's client heard
    it end. `holder` says what would still hold the slot when `seconds` have passed."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            return call()
        except ResourceExhausted:
            assert time.monotonic() < deadline, holder
            time.sleep(0.05)


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory, iris_model) -> Path:
    root = tmp_path_factory.mktemp("models")
    model, X, _ = iris_model
    (root / "iris.onnx").write_bytes(sklearn_to_onnx(model, X))
    identity_model(root / "identity.onnx")
    identity_model(root / "identity-typed.onnx", tuple(t for t in DTYPES if t != "FP16"))
    fixed_batch_model(root / "fixed.onnx")
    return root


@pytest.fixture(scope="module")
def runtime(tmp_path_factory, models_dir) -> Iterator[Runtime]:
    """One worker serving iris, the all-datatypes identity model and a fixed-batch model, with
    file:// data references allowed under a `refs` directory."""
    tmp = tmp_path_factory.mktemp("runtime")
    refs = tmp / "refs"
    refs.mkdir()
    rt = start_runtime(
        tmp,
        "--workers", "1",
        "--model-uri", f"iris=file://{models_dir / 'iris.onnx'}",
        "--model-uri", f"identity=file://{models_dir / 'identity.onnx'}",
        "--model-uri", f"fixed=file://{models_dir / 'fixed.onnx'}",
        "--model-uri", f"identity-typed=file://{models_dir / 'identity-typed.onnx'}",
        env={"MLAAS_DATA_URI_ROOTS": str(refs), "MLAAS_DATA_URI_MAX_BYTES": "100000",
             "MLAAS_MODEL_ROOTS": str(models_dir)},
    )  # fmt: skip
    rt.models_dir = refs
    yield rt
    stop_runtime(rt)
