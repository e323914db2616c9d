"""The REST endpoint attacked as a stranger and as another tenant would (findings of the
review of rest.py): idle and slow connections are closed, connections are capped below the
worker's file descriptors, bodies in flight are bounded per worker and per tenant, malformed
numbers and deep nesting are 400s (not 500s), and one port for both protocols is refused."""

from __future__ import annotations

import http.client
import json
import resource
import socket
import subprocess
import sys
import time

import pytest

from mlaas.services.net import free_port
from tests.conftest import tool_env
from tests.inference_svc.conftest import start_runtime, stop_runtime

pytestmark = pytest.mark.spawns  # see pyproject.toml


TOKENS = {"alpha": "tok-alpha", "beta": "tok-beta"}
ROW = {"inputs": [{"name": "X", "datatype": "FP32", "shape": [1, 4], "data": [5.1, 3.5, 1.4, 0.2]}]}


# The runtime's process gets 256 files, so 128 REST connections (util-linux's prlimit: no Python
# between fork and exec in this threaded test process).
FEW_DESCRIPTORS = ("prlimit", f"--nofile=256:{resource.getrlimit(resource.RLIMIT_NOFILE)[1]}", "--")


@pytest.fixture(scope="module")
def guarded(tmp_path_factory, models_dir):
    tmp = tmp_path_factory.mktemp("rest-abuse")
    tokens = tmp / "tokens.yaml"
    tokens.write_text("".join(f"{token}: {tenant}\n" for tenant, token in TOKENS.items()))
    rt = start_runtime(
        tmp, "--workers", "1", "--model-uri", f"iris=file://{models_dir / 'iris.onnx'}",
        "--model-uri", f"identity=file://{models_dir / 'identity-typed.onnx'}",
        env={"MLAAS_AUTH_TOKENS_FILE": str(tokens), "MLAAS_REST_HEADER_SECONDS": "1", "MLAAS_REST_BODY_SECONDS": "1",
             "MLAAS_REST_BODY_BUDGET_BYTES": str(2**20)},
        wrapper=FEW_DESCRIPTORS,
    )  # fmt: skip
    yield rt
    stop_runtime(rt)


def _connect(rt) -> socket.socket:
    host, port = rt.http.split(":")
    return socket.create_connection((host, int(port)), timeout=10)


def _closed_by_server(connection: socket.socket, within: float) -> bool:
    connection.settimeout(within)
    try:
        return connection.recv(65536) == b""
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True


def _infer(rt, body: bytes, token: str, extra: dict | None = None) -> tuple[int, dict]:
    connection = http.client.HTTPConnection(rt.http.split(":")[0], int(rt.http.split(":")[1]), timeout=30)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json", **(extra or {})}
    connection.request("POST", "/v2/models/iris/infer", body=body, headers=headers)
    reply = connection.getresponse()
    answer = (reply.status, json.loads(reply.read()))
    connection.close()
    return answer


def test_idle_and_slow_connections_are_closed_and_capped(guarded):
    idle = [_connect(guarded) for _ in range(150)]  # more than the 128 this worker keeps
    assert sum(_closed_by_server(c, 0.2) for c in idle[128:]) >= 20  # closed at once, not kept
    half = _connect(guarded)
    half.sendall(b"POST /v2/models/iris/infer HTTP/1.1\r\nHost: x\r\n")  # headers never finish
    time.sleep(1.5)
    assert all(_closed_by_server(c, 1.0) for c in idle[:128]) and _closed_by_server(half, 1.0)
    for c in [*idle, half]:
        c.close()
    trickle = _connect(guarded)  # headers on time, the body never whole
    trickle.sendall(b"POST /v2/models/iris/infer HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer tok-alpha\r\n"
                    b"Content-Length: 1000\r\n\r\n{")  # fmt: skip
    reply = http.client.HTTPResponse(trickle)
    reply.begin()
    assert reply.status == 408 and "MLAAS_REST_BODY_SECONDS" in json.loads(reply.read())["error"]
    trickle.close()
    assert _infer(guarded, json.dumps(ROW).encode(), TOKENS["alpha"])[0] == 200  # and it still serves


def test_bodies_in_flight_are_bounded_per_worker_and_per_tenant(guarded):
    """Budget 1 MiB a worker, 512 KiB a tenant: alpha stalls 400 KiB on one connection; its next
    400 KiB is refused at once, beta's is served; once alpha's connection goes, alpha is served."""
    padded = json.dumps(ROW).encode() + b" " * (400 * 2**10)  # valid JSON, 400 KiB
    stalled = _connect(guarded)
    stalled.sendall(b"POST /v2/models/iris/infer HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer tok-alpha\r\n"
                    b"Content-Length: %d\r\n\r\n" % len(padded) + padded[:-1])  # fmt: skip
    time.sleep(0.2)
    status, body = _infer(guarded, padded, TOKENS["alpha"])
    assert status == 429 and "request bodies are in flight on this worker" in body["error"]
    assert _infer(guarded, padded, TOKENS["beta"])[0] == 200
    stalled.close()
    time.sleep(0.2)
    assert _infer(guarded, padded, TOKENS["alpha"])[0] == 200


def test_malformed_numbers_and_deep_nesting_are_caller_errors(guarded):
    deep = "[" * 1000 + '"a"' + "]" * 1000
    body = ('{"inputs": [{"name": "in_BYTES", "datatype": "BYTES", "shape": [1, 3], "data": ' + deep + "}]}").encode()
    connection = http.client.HTTPConnection(*guarded.http.split(":"), timeout=30)
    connection.request("POST", "/v2/models/identity/infer", body=body, headers={"Authorization": "Bearer tok-alpha"})
    reply = connection.getresponse()
    assert reply.status == 400, reply.read()
    reply.read()
    for header in ("\u00b2", "9" * 5000):  # a digit to str.isdigit, not to int(); too many digits for int()
        status, answer = _infer(guarded, json.dumps(ROW).encode(), TOKENS["alpha"],
                                {"Inference-Header-Content-Length": header})  # fmt: skip
        assert status == 400 and "is not a number of bytes" in answer["error"]


def test_one_port_for_both_protocols_is_refused(tmp_path, models_dir):
    port = free_port()
    done = subprocess.run(
        [sys.executable, "-m", "inference_svc", "--port", str(port), "--http-port", str(port), "--metrics-port", "-1",
         "--model-uri", f"iris=file://{models_dir / 'iris.onnx'}"],
        capture_output=True, text=True, env=tool_env(MLAAS_DATA_DIR=str(tmp_path)), timeout=60,
    )  # fmt: skip
    assert done.returncode == 1 and "is given twice: gRPC, REST and bulk requests need a port each" in done.stderr


def test_headers_are_bounded_in_size_and_unread_bodies_keep_no_connection(guarded):
    """Second review: 100 MiB of headers were kept in memory; a connection answered before its
    body was read (a 404, a 401) stayed open on a trickle of that body, past every deadline; a
    GET with a body took the worker's body budget under no tenant's name."""
    huge = _connect(guarded)
    huge.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n" + b"X-Pad: " + b"a" * (100 * 2**10))
    reply = huge.recv(65536)
    assert reply.startswith(b"HTTP/1.1 431") and _closed_by_server(huge, 2.0)
    huge.close()
    for request in (b"POST /nope HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\nab",  # 404
                    b"POST /v2/models/iris/infer HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\nab",  # 401
                    b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer tok-alpha\r\n"
                    b"Content-Length: 4000000\r\n\r\nab"):  # fmt: skip
        trickle = _connect(guarded)
        trickle.sendall(request)
        answer = http.client.HTTPResponse(trickle)
        answer.begin()
        assert answer.getheader("connection") == "close", request[:40]
        answer.read()
        trickle.sendall(b"c")  # one more byte of the body, as a trickle would
        assert _closed_by_server(trickle, 2.0), request[:40]
        trickle.close()
    status, body = _infer(guarded, json.dumps(
        {"inputs": [{"name": "X", "datatype": "FP32", "shape": [1, 4], "parameters": {"binary_data_size": "16"}}]}
    ).encode(), TOKENS["alpha"])  # fmt: skip
    assert status == 400 and "binary_data_size must be an integer" in body["error"]
