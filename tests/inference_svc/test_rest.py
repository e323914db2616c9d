"""The runtime's HTTP/REST endpoint (inference_svc/rest.py) on real runtimes: unmodified
tritonclient.http and KServe's InferenceRESTClient, each in its own interpreter, with results
equal to onnxruntime's; the README's curl examples as written; errors and limits as the gRPC
side's, refused before anything is decoded; the same tokens and rules; REST requests in the
same statistics."""

from __future__ import annotations

import http.client
import json
import re
import socket
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import grpc
import numpy as np
import onnxruntime as ort
import pytest

from mlaas.oip import open_inference_v2_pb2 as oip
from mlaas.oip import open_inference_v2_pb2_grpc as oip_grpc
from tests.inference_svc.conftest import start_runtime, stop_runtime
from tests.inference_svc.test_compat import run_client

pytestmark = pytest.mark.spawns  # see pyproject.toml

README = Path(__file__).resolve().parents[2] / "README.md"
ROWS = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]


def call(url: str, body: dict | bytes | None = None, token: str | None = None, method: str | None = None):
    """(HTTP status, parsed JSON body)."""
    data = json.dumps(body).encode() if isinstance(body, dict) else body
    request = urllib.request.Request(url, data=data, method=method or ("POST" if data is not None else "GET"))
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=30) as reply:
            return reply.status, json.loads(reply.read() or b"null")
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"null")


def infer_body(rows=ROWS, **extra) -> dict:
    shape = list(np.shape(rows))
    return {"inputs": [{"name": "X", "datatype": "FP32", "shape": shape, "data": rows}], **extra}


def test_tritonclient_http_with_json_and_binary_data(runtime, models_dir):
    assert run_client("triton_http_check.py", runtime.http, str(models_dir / "iris.onnx")).strip() == "ok"


def test_kserve_rest_client(runtime, models_dir):
    assert run_client("kserve_rest_check.py", f"http://{runtime.http}", str(models_dir / "iris.onnx")).strip() == "ok"


def readme_curl_commands() -> list[str]:
    text = README.read_text()
    block = text.split("<!-- rest-examples:", 1)[1].split("```sh\n", 1)[1].split("```", 1)[0]
    commands: list[str] = []
    for line in block.replace("\\\n", " ").splitlines():  # a quoted JSON body may span lines
        if line.startswith("curl "):
            commands.append(line)
        elif line.strip():
            commands[-1] += "\n" + line
    return commands


def test_the_readmes_curl_examples_answer_as_it_says(tmp_path, models_dir):
    rt = start_runtime(tmp_path, "--workers", "1", "--model-uri", f"iris=file://{models_dir / 'iris.onnx'}")
    try:
        commands = readme_curl_commands()
        assert len(commands) == 5 and all(c.startswith("curl ") for c in commands)
        answers = []
        for command in commands:
            command = command.replace("127.0.0.1:8000", rt.http)
            done = subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=30)
            assert done.returncode == 0, done.stderr
            answers.append(json.loads(done.stdout))
        ready, metadata, first, second, stats = answers
        assert ready == {"ready": True}
        assert metadata["name"] == "iris" and metadata["inputs"] == [
            {"name": "X", "datatype": "FP32", "shape": [-1, 4]}
        ]
        session = ort.InferenceSession(str(models_dir / "iris.onnx"), providers=["CPUExecutionProvider"])
        labels, probabilities = session.run(None, {"X": np.array(ROWS, np.float32)})
        assert first["id"] == "r-1" and first["model_version"] == "1"
        outputs = {o["name"]: o for o in first["outputs"]}
        assert outputs["label"] == {"name": "label", "datatype": "INT64", "shape": [2], "data": labels.tolist()}
        assert np.array_equal(np.array(outputs["probabilities"]["data"], np.float32), probabilities.reshape(-1))
        shown = re.search(r'"label","datatype":"INT64","shape":\[2\],"data":(\[[0-9,]+\])', README.read_text())
        assert shown is not None and json.loads(shown.group(1)) == labels.tolist()  # the README shows this answer
        assert [o["name"] for o in second["outputs"]] == ["label"]
        success = stats["model_stats"][0]["inference_stats"]["success"]
        assert success["count"] == 2 and isinstance(success["ns"], int)  # numbers, as Triton writes them
    finally:
        stop_runtime(rt)


def test_errors_are_the_grpc_sides_with_http_statuses(runtime):
    base = f"http://{runtime.http}"
    status, body = call(f"{base}/v2/models/nowhere/infer", infer_body())
    assert status == 404 and body["error"].startswith("model 'nowhere' is not loaded here")
    assert call(f"{base}/v2/models/iris/infer", b"{not json")[0] == 400
    status, body = call(f"{base}/v2/models/iris/infer", infer_body([[1.0, 2.0, 3.0]]))
    assert status == 400 and "shape [1, 3] does not match the model's [-1, 4]" in body["error"]
    fp64 = {"inputs": [{"name": "X", "datatype": "FP64", "shape": [1, 4], "data": ROWS[0]}]}
    status, body = call(f"{base}/v2/models/iris/infer", fp64)
    assert status == 400 and "datatype FP64, expected FP32" in body["error"]
    status, body = call(f"{base}/v2/models/iris/infer", method="GET")
    assert status == 405 and "takes POST" in body["error"]
    assert call(f"{base}/v3/anything")[0] == 404
    # Binary data that no input claims, or that runs past the body, is refused.
    header = json.dumps({"inputs": [{"name": "X", "datatype": "FP32", "shape": [1, 4],
                                     "parameters": {"binary_data_size": 16}}]}).encode()  # fmt: skip
    raw = np.array(ROWS[:1], np.float32).tobytes()
    for body_bytes, reason in ((header + raw + b"xx", "no input claims"), (header + raw[:8], "runs past the end")):
        request = urllib.request.Request(
            f"{base}/v2/models/iris/infer",
            data=body_bytes,
            headers={"Inference-Header-Content-Length": str(len(header))},
        )
        try:
            urllib.request.urlopen(request, timeout=30)
            raise AssertionError("accepted")
        except urllib.error.HTTPError as err:
            assert err.code == 400 and reason in json.loads(err.read())["error"]
    request = urllib.request.Request(
        f"{base}/v2/models/iris/infer", data=header + raw, headers={"Inference-Header-Content-Length": str(len(header))}
    )
    with urllib.request.urlopen(request, timeout=30) as reply:
        assert json.loads(reply.read())["outputs"][0]["shape"] == [1]


def test_a_body_over_the_limit_is_refused_before_it_is_read(runtime):
    """A declared 100 MiB body is answered at once, without waiting for (or reading) it."""
    host, port = runtime.http.split(":")
    with socket.create_connection((host, int(port)), timeout=10) as connection:
        connection.sendall(b"POST /v2/models/iris/infer HTTP/1.1\r\nHost: x\r\nContent-Length: 104857600\r\n\r\n{")
        reply = http.client.HTTPResponse(connection)
        reply.begin()
        assert reply.status == 413 and "at most 67108864" in json.loads(reply.read())["error"]
        assert reply.getheader("connection") == "close"  # the rest of the body is never read


def test_tokens_rules_and_limits_are_the_grpc_sides(tmp_path, models_dir):
    tokens = tmp_path / "tokens.yaml"
    tokens.write_text("s3cret: team-a\nother: team-b\n")
    rt = start_runtime(
        tmp_path, "--workers", "1", "--model-uri", f"iris=file://{models_dir / 'iris.onnx'}",
        "--model-uri", f"identity=file://{models_dir / 'identity-typed.onnx'}",
        env={"MLAAS_AUTH_TOKENS_FILE": str(tokens), "MLAAS_TOKEN": "s3cret", "MLAAS_MAX_JSON_BYTES": "4096",
             "MLAAS_MAX_BYTES_ELEMENTS": "4", "MLAAS_MODEL_ROOTS": str(models_dir)},
    )  # fmt: skip
    base = f"http://{rt.http}"
    try:
        status, body = call(f"{base}/v2/models/iris/infer", infer_body())
        assert status == 401 and "Bearer" in body["error"]
        assert call(f"{base}/v2/health/ready", token="wrong")[0] == 401
        assert call(f"{base}/v2/models/iris/infer", infer_body(), token="other")[0] == 200
        # The repository is the operator's (the tenant of the runtime's own token), as over gRPC.
        status, body = call(f"{base}/v2/repository/models/iris/unload", {}, token="other")
        assert status == 403 and "not yours" in body["error"]
        status, _ = call(f"{base}/v2/repository/index", {}, token="s3cret")
        assert status == 200
        # The JSON part is bounded; the reason says how to send more.
        status, body = call(f"{base}/v2/models/iris/infer", infer_body([ROWS[0]] * 200), token="other")
        assert status == 429 and "binary data" in body["error"]
        # BYTES elements are counted before they become objects.
        strings = {"name": "in_BYTES", "datatype": "BYTES", "shape": [2, 3], "data": ["a"] * 6}
        status, body = call(f"{base}/v2/models/identity/infer", {"inputs": [strings]}, token="other")
        assert status == 429 and "more than 4 BYTES elements" in body["error"]
        # REST requests are in the statistics gRPC reports.
        with grpc.insecure_channel(rt.address) as channel:
            stats = oip_grpc.GRPCInferenceServiceStub(channel).ModelStatistics(
                oip.ModelStatisticsRequest(name="iris"), metadata=[("authorization", "Bearer s3cret")]
            )
        assert stats.model_stats[0].inference_stats.success.count == 1
    finally:
        stop_runtime(rt)
