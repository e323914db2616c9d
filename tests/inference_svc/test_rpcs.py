"""Every rpc of inference.GRPCInferenceService against a real runtime process."""

from __future__ import annotations

import json
import subprocess
import time
import urllib.request

import grpc
import numpy as np
import onnxruntime as ort
import pytest

from mlaas.inference_client import InferenceClient, build_request
from mlaas.oip import open_inference_v2_pb2 as oip
from mlaas.oip import open_inference_v2_pb2_grpc as oip_grpc
from mlaas.tensors import from_raw
from tests.conftest import tool_env
from tests.inference_svc.conftest import DTYPES

pytestmark = pytest.mark.spawns  # see pyproject.toml


ROWS = np.array([[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3], [5.9, 3.0, 4.2, 1.5]], dtype=np.float32)


@pytest.fixture
def stub(runtime):
    with runtime.channel() as channel:
        yield oip_grpc.GRPCInferenceServiceStub(channel)


def reference(models_dir, name: str, feeds: dict) -> dict:
    session = ort.InferenceSession(str(models_dir / name), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, feeds), strict=True))


def test_health_and_metadata(stub):
    assert stub.ServerLive(oip.ServerLiveRequest()).live
    assert stub.ServerReady(oip.ServerReadyRequest()).ready
    assert stub.ModelReady(oip.ModelReadyRequest(name="iris")).ready
    assert not stub.ModelReady(oip.ModelReadyRequest(name="iris", version="7")).ready
    assert not stub.ModelReady(oip.ModelReadyRequest(name="absent")).ready
    server = stub.ServerMetadata(oip.ServerMetadataRequest())
    assert server.name == "mlaas-inference" and "model_repository" in server.extensions
    meta = stub.ModelMetadata(oip.ModelMetadataRequest(name="iris"))
    assert meta.platform == "onnxruntime_onnx" and list(meta.versions) == ["1"]
    assert [(t.name, t.datatype, list(t.shape)) for t in meta.inputs] == [("X", "FP32", [-1, 4])]
    assert [(t.name, t.datatype, list(t.shape)) for t in meta.outputs] == [
        ("label", "INT64", [-1]),
        ("probabilities", "FP32", [-1, 3]),
    ]


def test_model_config_follows_triton_conventions(stub):
    config = stub.ModelConfig(oip.ModelConfigRequest(name="iris")).config
    assert config.max_batch_size == 256 and config.backend == "onnxruntime"
    assert [(i.name, i.data_type, list(i.dims)) for i in config.input] == [("X", oip.TYPE_FP32, [4])]
    assert config.HasField("dynamic_batching")
    fixed = stub.ModelConfig(oip.ModelConfigRequest(name="fixed")).config
    assert fixed.max_batch_size == 0 and list(fixed.input[0].dims) == [1, 4]


def test_infer_matches_onnxruntime_and_honours_requested_outputs(runtime, models_dir):
    with InferenceClient(runtime.address) as client:
        outputs = client.infer("iris", {"X": ROWS})
        expected = reference(models_dir, "iris.onnx", {"X": ROWS})
        assert np.array_equal(outputs["label"], expected["label"])
        assert np.array_equal(outputs["probabilities"], expected["probabilities"])
        only = client.infer("iris", {"X": ROWS}, outputs=["probabilities"])
        assert list(only) == ["probabilities"]
        fixed = client.infer("fixed", {"X": ROWS[:1]})
        assert fixed["Y"][0, 0] == pytest.approx(ROWS[0].sum(), rel=1e-6)


def test_typed_contents_are_accepted(stub):
    tensor = oip.ModelInferRequest.InferInputTensor(name="X", datatype="FP32", shape=[3, 4])
    tensor.contents.fp32_contents.extend(ROWS.reshape(-1).tolist())
    response = stub.ModelInfer(oip.ModelInferRequest(model_name="iris", id="typed", inputs=[tensor]))
    assert response.id == "typed"
    label = np.frombuffer(response.raw_output_contents[0], dtype=np.int64)
    assert label.shape == (3,)


def _identity_data(name: str) -> np.ndarray:
    _, dtype = DTYPES[name]
    if name == "BYTES":
        return np.array([[b"a", b"bc", "é".encode()], [b"", b"x" * 50, b"z"]], dtype=np.object_)
    if name == "BOOL":
        return np.array([[True, False, True], [False, False, True]])
    info = np.finfo(dtype) if np.dtype(dtype).kind == "f" else np.iinfo(dtype)
    return np.array([[info.min, 0, info.max], [1, 2, 3]], dtype=dtype)


@pytest.mark.parametrize("datatype", list(DTYPES))
def test_every_datatype_round_trips_raw(runtime, datatype):
    data = _identity_data(datatype)
    feeds = {f"in_{name}": _identity_data(name) for name in DTYPES}
    with InferenceClient(runtime.address) as client:
        outputs = client.infer("identity", feeds, outputs=[f"out_{datatype}"])
    got = outputs[f"out_{datatype}"]
    assert got.shape == data.shape
    assert np.array_equal(got, data)


TYPED_FIELD = {
    "BOOL": "bool_contents", "INT8": "int_contents", "INT16": "int_contents", "INT32": "int_contents",
    "INT64": "int64_contents", "UINT8": "uint_contents", "UINT16": "uint_contents", "UINT32": "uint_contents",
    "UINT64": "uint64_contents", "FP32": "fp32_contents", "FP64": "fp64_contents", "BYTES": "bytes_contents",
}  # fmt: skip


def _typed_request(model: str, datatypes) -> oip.ModelInferRequest:
    request = oip.ModelInferRequest(model_name=model)
    for name in datatypes:
        data = _identity_data(name)
        tensor = request.inputs.add(name=f"in_{name}", datatype=name, shape=data.shape)
        if name in TYPED_FIELD:
            getattr(tensor.contents, TYPED_FIELD[name]).extend(data.reshape(-1).tolist())
    return request


def test_every_typed_datatype_round_trips(stub):
    response = stub.ModelInfer(_typed_request("identity-typed", TYPED_FIELD))
    outputs = {t.name: (t, raw) for t, raw in zip(response.outputs, response.raw_output_contents, strict=True)}
    for name in TYPED_FIELD:
        tensor, raw = outputs[f"out_{name}"]
        assert np.array_equal(from_raw(raw, tensor.datatype, tuple(tensor.shape)), _identity_data(name)), name


def test_fp16_needs_raw_contents(stub):
    with pytest.raises(grpc.RpcError) as info:
        stub.ModelInfer(_typed_request("identity", DTYPES))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "input 'in_FP16': FP16 data must be sent in raw_input_contents" in info.value.details()


@pytest.mark.parametrize(
    ("mutate", "code", "message"),
    [
        (lambda r: setattr(r, "model_name", "absent"), grpc.StatusCode.NOT_FOUND, "model 'absent' is not loaded"),
        (lambda r: setattr(r.inputs[0], "datatype", "FP64"), grpc.StatusCode.INVALID_ARGUMENT,
         "input 'X': datatype FP64, expected FP32"),
        (lambda r: r.inputs[0].ClearField("shape") or r.inputs[0].shape.extend([12]),
         grpc.StatusCode.INVALID_ARGUMENT, "input 'X': shape [12] does not match the model's [-1, 4]"),
        (lambda r: r.inputs[0].ClearField("shape") or r.inputs[0].shape.extend([4, 3]),
         grpc.StatusCode.INVALID_ARGUMENT, "input 'X': shape [4, 3] does not match"),
        (lambda r: r.inputs[0].ClearField("shape") or r.inputs[0].shape.extend([4, 4]),
         grpc.StatusCode.INVALID_ARGUMENT, "input 'X': shape [4, 4] needs 16 elements, got 12"),
        (lambda r: setattr(r.inputs[0], "name", "features"), grpc.StatusCode.INVALID_ARGUMENT,
         "input 'features' does not exist; the model takes: X"),
        (lambda r: r.outputs.add(name="logits"), grpc.StatusCode.INVALID_ARGUMENT,
         "requested output 'logits' does not exist"),
        (lambda r: r.raw_input_contents.append(b"extra"), grpc.StatusCode.INVALID_ARGUMENT,
         "raw_input_contents has 2 entries for 1 inputs"),
        (lambda r: r.ClearField("inputs") or r.ClearField("raw_input_contents"), grpc.StatusCode.INVALID_ARGUMENT,
         "missing input(s) ['X']"),
        (lambda r: setattr(r, "model_version", "9"), grpc.StatusCode.NOT_FOUND, "version 9 is not loaded"),
    ],
    ids=["model", "dtype", "rank", "dims", "count", "name", "output", "raw-count", "missing", "version"],
)  # fmt: skip
def test_bad_requests_name_the_tensor(stub, mutate, code, message):
    request = build_request("iris", {"X": ROWS})
    mutate(request)
    with pytest.raises(grpc.RpcError) as info:
        stub.ModelInfer(request)
    assert info.value.code() == code
    assert message in info.value.details()


def test_stream_interleaves_good_and_bad_requests(stub, models_dir):
    requests = []
    for i in range(60):
        request = build_request("iris", {"X": ROWS[i % 3 : i % 3 + 1]}, request_id=f"r{i}")
        if i % 5 == 0:
            request.inputs[0].datatype = "INT32"
        if i % 7 == 0:
            request.model_name = "nope"
        requests.append(request)
    responses = list(stub.ModelStreamInfer(iter(requests), timeout=60))
    assert len(responses) == 60
    by_id = {r.infer_response.id: r for r in responses}
    assert set(by_id) == {f"r{i}" for i in range(60)}
    for i in range(60):
        response = by_id[f"r{i}"]
        if i % 7 == 0:
            assert "model 'nope' is not loaded" in response.error_message
        elif i % 5 == 0:
            assert "datatype INT32, expected FP32" in response.error_message
        else:
            assert response.error_message == ""
            label = np.frombuffer(response.infer_response.raw_output_contents[0], dtype=np.int64)
            expected = reference(models_dir, "iris.onnx", {"X": ROWS[i % 3 : i % 3 + 1]})["label"]
            assert np.array_equal(label, expected)


def test_statistics_count_rows_and_executions(stub):
    before = stub.ModelStatistics(oip.ModelStatisticsRequest(name="iris")).model_stats[0]
    stub.ModelInfer(build_request("iris", {"X": ROWS}))
    after = stub.ModelStatistics(oip.ModelStatisticsRequest(name="iris")).model_stats[0]
    assert after.inference_count == before.inference_count + 3
    assert after.execution_count == before.execution_count + 1
    assert after.inference_stats.success.count == before.inference_stats.success.count + 1
    assert after.last_inference >= before.last_inference
    every = stub.ModelStatistics(oip.ModelStatisticsRequest())
    assert {s.name for s in every.model_stats} == {"iris", "identity", "fixed", "identity-typed"}


def test_repository_load_and_unload(stub, models_dir):
    index = {m.name: m.state for m in stub.RepositoryIndex(oip.RepositoryIndexRequest()).models}
    assert index == {"iris": "READY", "identity": "READY", "fixed": "READY", "identity-typed": "READY"}
    load = oip.RepositoryModelLoadRequest(model_name="iris2")
    load.parameters["uri"].string_param = f"file://{models_dir / 'iris.onnx'}"
    stub.RepositoryModelLoad(load)
    assert stub.ModelReady(oip.ModelReadyRequest(name="iris2")).ready
    stub.RepositoryModelUnload(oip.RepositoryModelUnloadRequest(model_name="iris2"))
    assert not stub.ModelReady(oip.ModelReadyRequest(name="iris2")).ready
    with pytest.raises(grpc.RpcError) as info:
        stub.RepositoryModelUnload(oip.RepositoryModelUnloadRequest(model_name="iris2"))
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    bad = oip.RepositoryModelLoadRequest(model_name="broken")
    bad.parameters["uri"].string_param = f"file://{models_dir / 'missing.onnx'}"
    with pytest.raises(grpc.RpcError) as info:
        stub.RepositoryModelLoad(bad)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "no readable model there" in info.value.details()
    no_registry = oip.RepositoryModelLoadRequest(model_name="iris-logreg@champion")
    with pytest.raises(grpc.RpcError) as info:
        stub.RepositoryModelLoad(no_registry)
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION and "no registry configured" in info.value.details()


def test_prometheus_metrics(runtime, stub):
    """Observations reach the endpoint within the runtime's flush interval (half a second)."""
    ok_count = 'mlaas_inference_request_seconds_count{kind="unary",model="iris",status="OK"}'

    def scrape() -> str:
        return urllib.request.urlopen(f"http://127.0.0.1:{runtime.metrics_port}/metrics", timeout=10).read().decode()

    def counted(text: str) -> float:
        line = next((line for line in text.splitlines() if line.startswith(ok_count)), None)
        return float(line.split()[-1]) if line else 0.0

    time.sleep(1.0)  # earlier tests' requests on this runtime reach the endpoint first
    before = counted(scrape())
    for _ in range(3):
        stub.ModelInfer(build_request("iris", {"X": ROWS}))
    deadline = time.monotonic() + 5
    while counted(text := scrape()) < before + 3:
        assert time.monotonic() < deadline, "the three requests never reached the metrics endpoint"
        time.sleep(0.1)
    assert counted(text) == before + 3
    assert 'mlaas_inference_batch_rows_sum{model="iris"}' in text
    assert 'mlaas_inference_queued_rows{model="iris"' in text
    assert 'mlaas_inference_batch_rows_bucket{le="4.0",model="iris"}' in text
    assert "mlaas_inference_request_seconds_bucket" in text
    assert "mlaas_inference_queue_seconds_bucket" in text


def test_grpcurl_lists_and_calls_through_reflection(runtime):
    def grpcurl(*args):
        result = subprocess.run(["grpcurl", "-plaintext", *args], capture_output=True, text=True, env=tool_env())
        assert result.returncode == 0, result.stderr
        return result.stdout

    assert "inference.GRPCInferenceService" in grpcurl(runtime.address, "list").split()
    body = json.dumps(
        {"model_name": "iris", "inputs": [{"name": "X", "datatype": "FP32", "shape": [1, 4],
                                           "contents": {"fp32_contents": [5.1, 3.5, 1.4, 0.2]}}]}
    )  # fmt: skip
    reply = json.loads(grpcurl("-d", body, runtime.address, "inference.GRPCInferenceService/ModelInfer"))
    assert [o["name"] for o in reply["outputs"]] == ["label", "probabilities"]


def test_bytes_requests_are_bounded_before_they_are_decoded(stub):
    """32 MiB of empty BYTES elements once grew a worker by 2.2 GB: the declared element count is
    checked before anything is decoded, and the data may never hold more than it declares."""

    def request(shape, elements: int) -> oip.ModelInferRequest:
        """`elements` empty BYTES elements under `shape`; one row of every other input."""
        made = oip.ModelInferRequest(model_name="identity")
        for datatype in DTYPES:
            bytes_input = datatype == "BYTES"
            made.inputs.add(name=f"in_{datatype}", datatype=datatype, shape=shape if bytes_input else [1, 3])
            raw = b"\0\0\0\0" * elements if bytes_input else np.zeros((1, 3), DTYPES[datatype][1]).tobytes()
            made.raw_input_contents.append(raw)
        return made

    for shape, elements, code, message in (
        ([400_000, 3], 1, grpc.StatusCode.RESOURCE_EXHAUSTED, "1200000 BYTES elements; at most 1048576"),
        ([1, 3], 2_000_000, grpc.StatusCode.INVALID_ARGUMENT, "more than the 3 elements its shape declares"),
    ):
        with pytest.raises(grpc.RpcError) as refused:
            stub.ModelInfer(request(shape, elements), timeout=10)
        assert refused.value.code() == code and message in refused.value.details()
    assert stub.ModelInfer(request([1, 3], 3)).outputs  # within bounds it is served
