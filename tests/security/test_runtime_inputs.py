"""What a caller can make a runtime read: model files by RepositoryModelLoad's `parameters.uri`
(a standalone runtime only, only under its model roots, one answer for missing, unreadable and
not allowed), and https `data_uri` inputs (no redirects followed, no private addresses unless
allowed). A failed load leaves nothing that keeps the runtime unready."""

from __future__ import annotations

import http.server
import ssl
import threading

import grpc
import numpy as np
import pytest

from mlaas.oip import open_inference_v2_pb2 as oip
from mlaas.oip import open_inference_v2_pb2_grpc as oip_grpc
from tests.conftest import localhost_certificate
from tests.inference_svc.conftest import start_runtime, stop_runtime

pytestmark = pytest.mark.spawns  # see pyproject.toml


ROWS = np.array([[5.1, 3.5, 1.4, 0.2]], np.float32)


def _load(stub, name: str, uri: str):
    request = oip.RepositoryModelLoadRequest(model_name=name)
    request.parameters["uri"].string_param = uri
    return stub.RepositoryModelLoad(request, timeout=60)


def _refusal(call) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as refused:
        call()
    return refused.value.code(), refused.value.details()


def test_uri_loads_stay_under_the_model_roots_and_say_nothing_of_other_files(tmp_path, models_dir):
    roots = tmp_path / "models"
    roots.mkdir()
    (roots / "iris.onnx").write_bytes((models_dir / "iris.onnx").read_bytes())
    (roots / "broken.onnx").write_bytes(b"not a model")
    (roots / "escape.onnx").symlink_to(models_dir / "iris.onnx")  # resolves outside the roots
    rt = start_runtime(
        tmp_path, "--workers", "1", "--model-uri", f"identity=file://{models_dir / 'identity.onnx'}",
        env={"MLAAS_MODEL_ROOTS": str(roots)},
    )  # fmt: skip
    try:
        with rt.channel() as channel:
            stub = oip_grpc.GRPCInferenceServiceStub(channel)
            _load(stub, "iris", f"file://{roots / 'iris.onnx'}")
            assert stub.ModelReady(oip.ModelReadyRequest(name="iris")).ready

            answers = {}
            for name, uri in (
                ("missing", f"file://{roots / 'missing.onnx'}"),
                ("passwd", "file:///etc/passwd"),
                ("traversal", f"file://{roots}/../../etc/hostname"),
                ("escape", f"file://{roots / 'escape.onnx'}"),
                ("directory", f"file://{roots}"),
            ):
                code, message = _refusal(lambda n=name, u=uri: _load(stub, n, u))
                answers[name] = (code, message.replace(uri, "URI"))
            assert set(answers.values()) == {(grpc.StatusCode.INVALID_ARGUMENT, (
                "model uri URI: no readable model there, or not under the allowed roots "
                "(MLAAS_MODEL_ROOTS, MLAAS_MODEL_BUCKETS)"))}  # fmt: skip

            code, _ = _refusal(lambda: _load(stub, "broken", f"file://{roots / 'broken.onnx'}"))
            assert code == grpc.StatusCode.FAILED_PRECONDITION
            # The failed load is listed, does not make the runtime unready, and can be unloaded.
            index = stub.RepositoryIndex(oip.RepositoryIndexRequest())
            assert {m.name: m.state for m in index.models}["broken"] == "UNAVAILABLE"
            assert stub.ServerReady(oip.ServerReadyRequest()).ready
            stub.RepositoryModelUnload(oip.RepositoryModelUnloadRequest(model_name="broken"))
            assert "broken" not in {m.name for m in stub.RepositoryIndex(oip.RepositoryIndexRequest()).models}
    finally:
        stop_runtime(rt)


def test_without_model_roots_no_uri_is_loaded(tmp_path, models_dir):
    rt = start_runtime(tmp_path, "--workers", "1", "--model-uri", f"identity=file://{models_dir / 'identity.onnx'}")
    try:
        with rt.channel() as channel:
            stub = oip_grpc.GRPCInferenceServiceStub(channel)
            code, _ = _refusal(lambda: _load(stub, "iris", f"file://{models_dir / 'iris.onnx'}"))
            assert code == grpc.StatusCode.INVALID_ARGUMENT
    finally:
        stop_runtime(rt)


@pytest.fixture
def redirecting_server(tmp_path):
    """An allowed HTTPS host that answers every request with a redirect to a plain-http address
    on loopback (where an internal service would be)."""
    key, cert = localhost_certificate(tmp_path)
    internal_hits = []

    class Internal(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            internal_hits.append(self.path)
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    internal = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Internal)

    class Redirect(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(302)
            self.send_header("Location", f"http://127.0.0.1:{internal.server_address[1]}/secret.npy")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Redirect)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    for s in (server, internal):
        threading.Thread(target=s.serve_forever, daemon=True).start()
    yield server.server_address[1], cert, internal_hits
    server.shutdown()
    internal.shutdown()


def _by_reference(uri: str) -> oip.ModelInferRequest:
    request = oip.ModelInferRequest(model_name="iris")
    tensor = request.inputs.add(name="X", datatype="FP32", shape=[1, 4])
    tensor.parameters["data_uri"].string_param = uri
    return request


def test_https_references_follow_no_redirect_and_reach_no_private_address(tmp_path, models_dir, redirecting_server):
    port, ca, internal_hits = redirecting_server
    model = f"iris=file://{models_dir / 'iris.onnx'}"
    allowed = {"MLAAS_DATA_URI_HOSTS": "localhost", "MLAAS_DATA_URI_CA_FILE": str(ca)}
    private_ok = start_runtime(tmp_path, "--workers", "1", "--model-uri", model,
                               env={**allowed, "MLAAS_DATA_URI_ALLOW_PRIVATE": "true"})  # fmt: skip
    try:
        with private_ok.channel() as channel:
            stub = oip_grpc.GRPCInferenceServiceStub(channel)
            code, message = _refusal(lambda: stub.ModelInfer(_by_reference(f"https://localhost:{port}/rows.npy")))
            assert code == grpc.StatusCode.PERMISSION_DENIED and "redirects are not followed" in message
    finally:
        stop_runtime(private_ok)
    assert internal_hits == []  # the internal address was never fetched

    default = start_runtime(tmp_path, "--workers", "1", "--model-uri", model, env=allowed)
    try:
        with default.channel() as channel:
            stub = oip_grpc.GRPCInferenceServiceStub(channel)
            code, message = _refusal(lambda: stub.ModelInfer(_by_reference(f"https://localhost:{port}/rows.npy")))
            assert code == grpc.StatusCode.PERMISSION_DENIED
            assert "resolves to the non-public address" in message
    finally:
        stop_runtime(default)


def test_a_standalone_runtimes_repository_is_its_operators(tmp_path, models_dir):
    """Any tenant may infer on an operator's standalone runtime, but only the operator's tenant
    (whose token the runtime fetches with) may load or unload: beta must not make it fetch, with
    alpha's rights, what only alpha may read, nor unload alpha's models."""
    tokens = tmp_path / "tokens.yaml"
    tokens.write_text("token-alpha: alpha\ntoken-beta: beta\n")
    rt = start_runtime(
        tmp_path, "--workers", "1", "--model-uri", f"iris=file://{models_dir / 'iris.onnx'}",
        env={"MLAAS_AUTH_TOKENS_FILE": str(tokens), "MLAAS_TOKEN": "token-alpha", "MLAAS_MODEL_ROOTS": str(models_dir)},
    )  # fmt: skip
    try:
        with rt.channel() as channel:
            stub = oip_grpc.GRPCInferenceServiceStub(channel)

            def as_(tenant):
                return [("authorization", f"Bearer token-{tenant}")]

            load = oip.RepositoryModelLoadRequest(model_name="identity")
            load.parameters["uri"].string_param = f"file://{models_dir / 'identity.onnx'}"
            for call in (
                lambda: stub.RepositoryModelLoad(oip.RepositoryModelLoadRequest(model_name="alpha-secret:1"),
                                                 metadata=as_("beta")),
                lambda: stub.RepositoryModelLoad(load, metadata=as_("beta")),
                lambda: stub.RepositoryModelUnload(oip.RepositoryModelUnloadRequest(model_name="iris"),
                                                   metadata=as_("beta")),
            ):  # fmt: skip
                assert _refusal(call)[0] == grpc.StatusCode.PERMISSION_DENIED
            assert stub.ModelReady(oip.ModelReadyRequest(name="iris"), metadata=as_("beta")).ready
            stub.RepositoryModelLoad(load, metadata=as_("alpha"), timeout=60)
            assert stub.ModelReady(oip.ModelReadyRequest(name="identity"), metadata=as_("beta")).ready
    finally:
        stop_runtime(rt)
