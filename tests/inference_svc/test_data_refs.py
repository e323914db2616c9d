"""Inputs by reference (`data_uri`): file://, s3:// (moto's standalone server) and https:// (a
local TLS server with a throwaway CA), each format, and every refusal."""

from __future__ import annotations

import http.server
import ssl
import threading

import boto3
import grpc
import numpy as np
import pytest
from moto.server import ThreadedMotoServer

from mlaas.oip import open_inference_v2_pb2 as oip
from mlaas.oip import open_inference_v2_pb2_grpc as oip_grpc
from mlaas.services.net import free_port
from tests.conftest import localhost_certificate
from tests.inference_svc.conftest import start_runtime, stop_runtime

pytestmark = pytest.mark.spawns  # see pyproject.toml


ROWS = np.array([[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]], dtype=np.float32)


def by_reference(uri: str, shape=(), datatype="FP32") -> oip.ModelInferRequest:
    tensor = oip.ModelInferRequest.InferInputTensor(name="X", datatype=datatype, shape=list(shape))
    tensor.parameters["data_uri"].string_param = uri
    return oip.ModelInferRequest(model_name="iris", inputs=[tensor])


def labels(response) -> np.ndarray:
    return np.frombuffer(response.raw_output_contents[0], dtype=np.int64)


@pytest.fixture
def stub(runtime):
    with runtime.channel() as channel:
        yield oip_grpc.GRPCInferenceServiceStub(channel)


def expect_error(stub, request, code, message):
    with pytest.raises(grpc.RpcError) as info:
        stub.ModelInfer(request)
    assert info.value.code() == code, info.value.details()
    assert message in info.value.details()


def test_file_references_in_every_format(runtime, stub):
    refs = runtime.models_dir
    np.save(refs / "rows.npy", ROWS)
    np.savez(refs / "rows.npz", features=ROWS, other=np.zeros(3))
    np.savetxt(refs / "rows.csv", ROWS, delimiter=",")
    direct = stub.ModelInfer(
        oip.ModelInferRequest(
            model_name="iris",
            inputs=[oip.ModelInferRequest.InferInputTensor(name="X", datatype="FP32", shape=[2, 4])],
            raw_input_contents=[ROWS.tobytes()],
        )
    )
    for uri in (f"file://{refs}/rows.npy", f"file://{refs}/rows.npz#features", f"file://{refs}/rows.csv"):
        assert np.array_equal(labels(stub.ModelInfer(by_reference(uri, shape=[2, 4]))), labels(direct)), uri
    # shape may be left out: the referenced array says it
    assert len(labels(stub.ModelInfer(by_reference(f"file://{refs}/rows.npy")))) == 2


def test_file_refusals(runtime, stub, tmp_path):
    refs = runtime.models_dir
    np.save(tmp_path / "outside.npy", ROWS)
    np.save(refs / "big.npy", np.zeros((10000, 4), np.float32))
    np.save(refs / "wide.npy", np.zeros((2, 5), np.float32))
    np.save(refs / "text.npy", np.array([["a"] * 4] * 2))
    (refs / "rows.parquet").write_bytes(b"PAR1")
    np.savez(refs / "two.npz", a=ROWS, b=ROWS)
    np.savez_compressed(refs / "bomb.npz", X=np.zeros((250_000, 4), np.float32))  # 4 MB in a few KB
    denied, invalid = grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.INVALID_ARGUMENT
    cases = [
        (f"file://{tmp_path}/outside.npy", denied, "is outside the allowed roots"),
        (f"file://{refs}/../outside.npy", denied, "is outside the allowed roots"),
        (f"file://{refs}/missing.npy", invalid, "no such file"),
        (f"file://{refs}/big.npy", grpc.StatusCode.RESOURCE_EXHAUSTED, "exceeds the limit of 100000 bytes"),
        (f"file://{refs}/wide.npy", invalid, "shape [2, 5] does not match the model's [-1, 4]"),
        (f"file://{refs}/text.npy", invalid, "the model takes FP32"),
        (f"file://{refs}/rows.parquet", invalid, "unsupported format .parquet"),
        (f"file://{refs}/two.npz", invalid, "name the array after '#'"),
        (f"file://{refs}/bomb.npz", grpc.StatusCode.RESOURCE_EXHAUSTED, "(as declared): 4000000 bytes exceeds"),
        ("ftp://host/rows.npy", invalid, "scheme must be file://, s3:// or https://"),
        ("https://example.invalid/rows.npy", denied, "host 'example.invalid' is not allowed"),
        ("s3://somebody/rows.npy", denied, "bucket 'somebody' is not allowed"),
    ]
    for uri, code, message in cases:
        expect_error(stub, by_reference(uri), code, message)
    expect_error(stub, by_reference(f"file://{refs}/rows.npy", shape=[3, 4]), invalid, "the request says [3, 4]")


@pytest.fixture
def tls_server(tmp_path):
    """An HTTPS server on loopback with a certificate from a throwaway CA."""
    key, cert = localhost_certificate(tmp_path)
    site = tmp_path / "site"
    site.mkdir()
    np.save(site / "rows.npy", ROWS)
    handler = lambda *a, **k: http.server.SimpleHTTPRequestHandler(*a, directory=str(site), **k)  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1], cert
    server.shutdown()


@pytest.fixture
def s3_bucket(monkeypatch):
    for key, value in (("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing"),
                       ("AWS_DEFAULT_REGION", "us-east-1")):  # fmt: skip
        monkeypatch.setenv(key, value)
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    s3 = boto3.client("s3", endpoint_url=endpoint)
    s3.create_bucket(Bucket="inputs")
    import io

    buffer = io.BytesIO()
    np.save(buffer, ROWS)
    s3.put_object(Bucket="inputs", Key="batch/rows.npy", Body=buffer.getvalue())
    yield endpoint
    server.stop()


def test_https_and_s3_references(tmp_path, models_dir, tls_server, s3_bucket):
    https_port, ca = tls_server
    rt = start_runtime(
        tmp_path, "--workers", "1", "--model-uri", f"iris=file://{models_dir / 'iris.onnx'}",
        env={"MLAAS_DATA_URI_HOSTS": "localhost", "MLAAS_DATA_URI_CA_FILE": str(ca),
             "MLAAS_DATA_URI_ALLOW_PRIVATE": "true",
             "MLAAS_DATA_URI_BUCKETS": "inputs", "MLAAS_S3_ENDPOINT_URL": s3_bucket},
    )  # fmt: skip
    try:
        with rt.channel() as channel:
            stub = oip_grpc.GRPCInferenceServiceStub(channel)
            via_https = stub.ModelInfer(by_reference(f"https://localhost:{https_port}/rows.npy"))
            via_s3 = stub.ModelInfer(by_reference("s3://inputs/batch/rows.npy"))
            assert np.array_equal(labels(via_https), labels(via_s3)) and len(labels(via_s3)) == 2
            expect_error(
                stub, by_reference(f"https://localhost:{https_port}/missing.npy"), grpc.StatusCode.INVALID_ARGUMENT,
                "cannot fetch",
            )  # fmt: skip
            expect_error(
                stub, by_reference("s3://inputs/missing.npy"), grpc.StatusCode.INVALID_ARGUMENT, "cannot fetch"
            )
    finally:
        stop_runtime(rt)


def test_model_artifact_from_s3(tmp_path, models_dir, s3_bucket):
    boto3.client("s3", endpoint_url=s3_bucket).upload_file(str(models_dir / "iris.onnx"), "inputs", "models/iris.onnx")
    rt = start_runtime(
        tmp_path, "--workers", "1", "--model-uri", "iris=s3://inputs/models/iris.onnx",
        env={"MLAAS_S3_ENDPOINT_URL": s3_bucket},
    )  # fmt: skip
    try:
        with rt.channel() as channel:
            stub = oip_grpc.GRPCInferenceServiceStub(channel)
            request = oip.ModelInferRequest(
                model_name="iris",
                inputs=[oip.ModelInferRequest.InferInputTensor(name="X", datatype="FP32", shape=[2, 4])],
                raw_input_contents=[ROWS.tobytes()],
            )
            assert len(labels(stub.ModelInfer(request))) == 2
        cached = list((tmp_path / "data" / "runtime-cache").iterdir())
        assert [p.suffix for p in cached] == [".onnx"]  # downloaded under its sha256, no partial left
    finally:
        stop_runtime(rt)
