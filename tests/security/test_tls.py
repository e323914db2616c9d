"""TLS and mTLS end to end, on real servers on 127.0.0.1 with certificates made by mlaas.local.certs:
the SDK, the CLI, unmodified tritonclient and grpcurl against a TLS runtime and a mTLS registry,
a client of another CA and a client without a certificate refused, certificate files reloaded
for new connections, tokens never served in clear beyond loopback, and `mlaas up --tls`."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from mlaas import errors
from mlaas.client import MonitorClient, RegistryClient, SchedulerClient
from mlaas.local.certs import LocalPKI, local_pki
from mlaas.services.auth import Authenticator
from mlaas.services.net import free_port, wait_healthy
from mlaas.services.server import bind_host
from mlaas.services.settings import ServerSettings
from mlaas.tls import ClientTLS, ServerTLS, channel
from mlaas.v1 import scheduler_pb2
from tests.conftest import tiny_onnx, tool_env, with_server
from tests.registry_svc.helpers import describe

pytestmark = pytest.mark.spawns  # see pyproject.toml


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> LocalPKI:
    return local_pki(tmp_path_factory.mktemp("pki") / "tls")


@pytest.fixture(scope="module")
def other_pki(tmp_path_factory) -> LocalPKI:
    """Another CA, with certificates for the same names: trusted by nobody here."""
    return local_pki(tmp_path_factory.mktemp("other") / "tls")


def client_of(pki: LocalPKI, certificate: bool = True) -> ClientTLS:
    if certificate:
        return ClientTLS(str(pki.ca_cert), str(pki.client_cert), str(pki.client_key))
    return ClientTLS(str(pki.ca_cert))


def server_of(pki: LocalPKI, mutual: bool) -> ServerTLS:
    return ServerTLS(str(pki.server_cert), str(pki.server_key), str(pki.ca_cert) if mutual else None)


@pytest.fixture
def mtls_registry(start_registry, registry_settings, pki) -> str:
    server = start_registry(with_server(registry_settings, tls=server_of(pki, mutual=True)))
    return f"127.0.0.1:{server.port}"


def check(address: str, tls: ClientTLS | None) -> str:
    """One health check on a connection of its own (never one an earlier check left open)."""
    options = [("grpc.use_local_subchannel_pool", 1)]
    with channel(address, options, tls) if tls else grpc.insecure_channel(address, options) as opened:
        try:
            reply = health_pb2_grpc.HealthStub(opened).Check(health_pb2.HealthCheckRequest(), timeout=5)
        except grpc.RpcError as err:
            return err.code().name
    return health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)


def run(*command: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(list(command), capture_output=True, text=True, env=env or tool_env(), timeout=120)


def cli(*args: str) -> subprocess.CompletedProcess:
    return run(sys.executable, "-m", "mlaas.cli", *args)


# -- certificates and settings ---------------------------------------------------------------------


def test_local_pki_keys_are_private_and_reused(tmp_path):
    first = local_pki(tmp_path / "tls")
    for key in (first.ca_key, first.server_key, first.client_key):
        assert key.stat().st_mode & 0o777 == 0o600, key
    assert (tmp_path / "tls").stat().st_mode & 0o777 == 0o700
    before = {p.name: p.read_bytes() for p in (tmp_path / "tls").iterdir()}
    local_pki(tmp_path / "tls")
    assert {p.name: p.read_bytes() for p in (tmp_path / "tls").iterdir()} == before
    # a server certificate that lacks a wanted name is issued again, by the same CA
    local_pki(tmp_path / "tls", ["localhost", "127.0.0.1", "::1", "mesh.example"])
    assert first.server_cert.read_bytes() != before["server.crt"]
    assert first.ca_cert.read_bytes() == before["ca.crt"]


def test_misconfigured_tls_is_a_clear_error_at_start(pki, other_pki, tmp_path):
    with pytest.raises(ValueError, match="MLAAS_TLS_CERT is set but MLAAS_TLS_KEY is not"):
        ServerTLS.from_env({"MLAAS_TLS_CERT": str(pki.server_cert)})
    with pytest.raises(ValueError, match=r"MLAAS_TLS_KEY=.*cannot read it"):
        ServerTLS.from_env({"MLAAS_TLS_CERT": str(pki.server_cert), "MLAAS_TLS_KEY": str(tmp_path / "missing.key")})
    with pytest.raises(ValueError, match="does not belong to this certificate"):
        ServerTLS.from_env({"MLAAS_TLS_CERT": str(pki.server_cert), "MLAAS_TLS_KEY": str(other_pki.server_key)})
    with pytest.raises(ValueError, match="MLAAS_TLS_CLIENT_CA needs MLAAS_TLS_CERT"):
        ServerTLS.from_env({"MLAAS_TLS_CLIENT_CA": str(pki.ca_cert)})
    with pytest.raises(ValueError, match="MLAAS_TLS_CLIENT_CERT needs MLAAS_TLS_CA"):
        ClientTLS.from_env({"MLAAS_TLS_CLIENT_CERT": str(pki.client_cert), "MLAAS_TLS_CLIENT_KEY": str(pki.client_key)})
    (tmp_path / "not.pem").write_text("hello")
    with pytest.raises(ValueError, match=r"MLAAS_TLS_CA=.*not a PEM file"):
        ClientTLS.from_env({"MLAAS_TLS_CA": str(tmp_path / "not.pem")})
    assert ServerTLS.from_env({}) is None and ClientTLS.from_env({}) is None
    settings = ServerSettings.from_env(pki.env(mutual=True), "registry", 50051)
    assert settings.tls == server_of(pki, mutual=True) and settings.tls.mutual


def test_tokens_are_never_served_in_clear_beyond_loopback(tmp_path, pki):
    tokens = tmp_path / "tokens.yaml"
    tokens.write_text("token-a: alpha\n")
    authenticator = Authenticator.from_file(str(tokens))
    remote = ServerSettings(host="0.0.0.0", auth_tokens_file=str(tokens))
    with pytest.raises(ValueError, match="MLAAS_ALLOW_PLAINTEXT"):
        bind_host(remote, authenticator)
    assert bind_host(with_tls(remote, server_of(pki, mutual=False)), authenticator) == "0.0.0.0"
    assert bind_host(ServerSettings(host="0.0.0.0", allow_plaintext=True), authenticator) == "0.0.0.0"
    assert bind_host(ServerSettings(host="127.0.0.1"), authenticator) == "127.0.0.1"
    # the real server refuses to start, and says how to fix it
    env = tool_env(MLAAS_DATA_DIR=str(tmp_path / "data"), MLAAS_HOST="0.0.0.0", MLAAS_REGISTRY_PORT=str(free_port()),
                   MLAAS_REGISTRY_METRICS_PORT="-1", MLAAS_AUTH_TOKENS_FILE=str(tokens))  # fmt: skip
    refused = run(sys.executable, "-m", "registry_svc", env=env)
    assert refused.returncode != 0
    assert "refusing to serve bearer tokens in clear on 0.0.0.0" in refused.stderr
    assert "MLAAS_ALLOW_PLAINTEXT=true" in refused.stderr


def with_tls(settings: ServerSettings, tls: ServerTLS) -> ServerSettings:
    import dataclasses

    return dataclasses.replace(settings, tls=tls)


# -- the SDK and the CLI against a mTLS registry ---------------------------------------------------


def test_sdk_over_mtls(mtls_registry, pki):
    with RegistryClient(mtls_registry, tls=client_of(pki)) as registry:
        registry.register(tiny_onnx(), describe("over-mtls"))
        assert [m.description.name for m in registry.list()] == ["over-mtls"]


def test_a_client_of_another_ca_is_refused(mtls_registry, other_pki):
    with RegistryClient(mtls_registry, tls=client_of(other_pki)) as registry, pytest.raises(errors.Unavailable):
        registry.find()


def test_mtls_refuses_a_client_without_a_certificate(mtls_registry, pki):
    without = client_of(pki, certificate=False)
    with RegistryClient(mtls_registry, tls=without) as registry, pytest.raises(errors.Unavailable):
        registry.find()
    with RegistryClient(mtls_registry) as plaintext, pytest.raises(errors.Unavailable):
        plaintext.find()


def test_the_cli_over_mtls(mtls_registry, pki):
    with RegistryClient(mtls_registry, tls=client_of(pki)) as registry:
        registry.register(tiny_onnx(), describe("via-cli"))
    flags = ["--registry", mtls_registry, "--tls-ca", str(pki.ca_cert)]
    certificate = ["--tls-cert", str(pki.client_cert), "--tls-key", str(pki.client_key)]
    listed = cli("model", "list", "--json", *flags, *certificate)
    assert listed.returncode == 0, listed.stderr
    assert [m["description"]["name"] for m in json.loads(listed.stdout)] == ["via-cli"]
    no_certificate = cli("model", "list", *flags)
    assert no_certificate.returncode == 1 and "UNAVAILABLE" in no_certificate.stderr
    from_env = run(sys.executable, "-m", "mlaas.cli", "model", "list", "--json", "--registry", mtls_registry,
                   env=tool_env(**client_of(pki).env()))  # fmt: skip
    assert from_env.returncode == 0 and "via-cli" in from_env.stdout, from_env.stderr


def test_the_image_health_check_over_mtls(mtls_registry, pki):
    """What the Kubernetes probes and the Docker health check run: TLS from the environment."""
    probe = [sys.executable, "-m", "mlaas.services.healthcheck", mtls_registry]
    serving = run(*probe, env=tool_env(**client_of(pki).env()))
    assert serving.returncode == 0 and serving.stdout.strip() == "SERVING", serving.stderr
    refused = run(*probe, env=tool_env(**client_of(pki, certificate=False).env()))
    assert refused.returncode == 1 and refused.stdout.strip() == "UNAVAILABLE"


def grpcurl(*args: str) -> subprocess.CompletedProcess:
    return run("grpcurl", *args)


def test_grpcurl_over_mtls(mtls_registry, pki, other_pki):
    listed = grpcurl("-cacert", str(pki.ca_cert), "-cert", str(pki.client_cert), "-key", str(pki.client_key),
                     mtls_registry, "list")  # fmt: skip
    assert listed.returncode == 0, listed.stderr
    assert "mlaas.v1.RegistryService" in listed.stdout.split()
    assert grpcurl("-cacert", str(pki.ca_cert), mtls_registry, "list").returncode != 0  # no client certificate
    wrong_ca = grpcurl("-cacert", str(other_pki.ca_cert), "-cert", str(pki.client_cert), "-key", str(pki.client_key),
                       mtls_registry, "list")  # fmt: skip
    assert wrong_ca.returncode != 0 and "certificate" in wrong_ca.stderr


# -- certificate reload ----------------------------------------------------------------------------


def test_new_connections_get_the_replaced_certificate(start_registry, registry_settings, pki, other_pki, tmp_path):
    live = tmp_path / "live"
    live.mkdir()
    for name in ("server.crt", "server.key"):
        shutil.copy(pki.directory / name, live / name)
    tls = ServerTLS(str(live / "server.crt"), str(live / "server.key"))
    address = f"127.0.0.1:{start_registry(with_server(registry_settings, tls=tls)).port}"
    old, new = client_of(pki, certificate=False), client_of(other_pki, certificate=False)
    assert (check(address, old), check(address, new)) == ("SERVING", "UNAVAILABLE")

    shutil.copy(other_pki.server_cert, live / "server.crt")  # half replaced: the key is still the old one
    assert (check(address, old), check(address, new)) == ("SERVING", "UNAVAILABLE")
    shutil.copy(other_pki.server_key, live / "server.key")
    assert (check(address, old), check(address, new)) == ("UNAVAILABLE", "SERVING")


# -- a TLS runtime: tritonclient, grpcurl and the SDK ----------------------------------------------


@pytest.fixture(scope="module")
def tls_runtime(tmp_path_factory, pki) -> Iterator[tuple[str, Path]]:
    """A runtime serving iris over TLS (no client certificate asked: as tritonclient users call it)."""
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    from mlaas.export import sklearn_to_onnx

    tmp = tmp_path_factory.mktemp("tls-runtime")
    X, y = load_iris(return_X_y=True)
    X = X.astype(np.float32)
    model = tmp / "iris.onnx"
    model.write_bytes(sklearn_to_onnx(LogisticRegression(max_iter=300).fit(X, y), X))
    port, http_port = free_port(), free_port()
    env = tool_env(MLAAS_DATA_DIR=str(tmp / "data"), MLAAS_TLS_CERT=str(pki.server_cert),
                   MLAAS_TLS_KEY=str(pki.server_key))  # fmt: skip
    command = [sys.executable, "-m", "inference_svc", "--port", str(port), "--metrics-port", "-1", "--workers", "2",
               "--http-port", str(http_port), "--model-uri", f"iris=file://{model}"]  # fmt: skip
    with open(tmp / "runtime.log", "wb") as log:
        process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=log)
    try:
        try:
            wait_healthy(f"127.0.0.1:{port}", timeout=90, tls=client_of(pki, certificate=False))
        except TimeoutError:
            raise AssertionError((tmp / "runtime.log").read_text()) from None
        yield f"127.0.0.1:{port}", model, f"127.0.0.1:{http_port}"
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


TRITON = """
import sys
import numpy as np
import tritonclient.grpc as tc


address, ca = sys.argv[1], sys.argv[2]
client = tc.InferenceServerClient(address, ssl=True, root_certificates=ca)
assert client.is_server_live() and client.is_model_ready("iris")
x = tc.InferInput("X", [2, 4], "FP32")
x.set_data_from_numpy(np.array([[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]], dtype=np.float32))
print(client.infer("iris", [x]).as_numpy("label").tolist())
"""


def test_unmodified_tritonclient_over_tls(tls_runtime, pki, other_pki):
    address, _, _ = tls_runtime
    answer = run(sys.executable, "-c", TRITON, address, str(pki.ca_cert))
    assert answer.returncode == 0, answer.stderr
    assert json.loads(answer.stdout) == [0, 2]
    refused = run(sys.executable, "-c", TRITON, address, str(other_pki.ca_cert))
    assert refused.returncode != 0 and "UNAVAILABLE" in refused.stderr


def test_grpcurl_against_a_tls_runtime(tls_runtime, pki):
    address, _, _ = tls_runtime
    listed = grpcurl("-cacert", str(pki.ca_cert), address, "list")
    assert listed.returncode == 0, listed.stderr
    assert "inference.GRPCInferenceService" in listed.stdout.split()
    ready = grpcurl("-cacert", str(pki.ca_cert), "-d", '{"name": "iris"}', address,
                    "inference.GRPCInferenceService/ModelReady")  # fmt: skip
    assert ready.returncode == 0 and json.loads(ready.stdout) == {"ready": True}, ready.stderr
    assert grpcurl("-plaintext", address, "list").returncode != 0


def test_the_sdk_against_a_tls_runtime(tls_runtime, pki):
    from mlaas.inference_client import InferenceClient

    address, _, _ = tls_runtime
    rows = np.array([[5.1, 3.5, 1.4, 0.2]], dtype=np.float32)
    with InferenceClient(address, tls=client_of(pki, certificate=False), connections=2) as runtime:
        assert runtime.infer("iris", {"X": rows})["label"].tolist() == [0]
    with InferenceClient(address) as plaintext, pytest.raises(errors.Unavailable):
        plaintext.infer("iris", {"X": rows})


def test_rest_over_tls_with_the_same_certificate(tls_runtime, pki, other_pki):
    """The runtime's REST port serves the gRPC side's certificate: curl trusting the mesh CA
    infers; trusting another CA, or in plaintext, it gets nothing."""
    _, _, http = tls_runtime
    body = '{"inputs": [{"name": "X", "datatype": "FP32", "shape": [1, 4], "data": [5.1, 3.5, 1.4, 0.2]}]}'
    url = f"https://localhost:{http.rsplit(':', 1)[1]}/v2/models/iris/infer"
    answer = run("curl", "-sS", "--cacert", str(pki.ca_cert), "-d", body, url)
    assert answer.returncode == 0, answer.stderr
    assert json.loads(answer.stdout)["outputs"][0]["data"] == [0]
    assert run("curl", "-sS", "--cacert", str(other_pki.ca_cert), "-d", body, url).returncode != 0
    assert run("curl", "-sS", "-d", body, url.replace("https://", "http://")).returncode != 0


# -- the whole local mesh: mlaas up --tls ----------------------------------------------------------


def test_up_tls_with_a_tokens_file_runs_the_demo_over_mtls(tmp_path):
    """The whole local mesh as a multi-tenant operator runs it: tenants' tokens, the components'
    roles and the runtimes' minted credentials, every connection over mTLS."""
    from mlaas.inference_client import DeploymentInference, InferenceClient

    tokens = tmp_path / "tokens.yaml"
    tokens.write_text("token-alpha: alpha\ntoken-beta: beta\n")
    command = [
        sys.executable, "-m", "mlaas.cli", "up", "--tls", "--demo", "--json", "--data-dir", str(tmp_path / "mesh"),
        "--registry-port", "0", "--registry-metrics-port", "-1", "--scheduler-port", "0",
        "--scheduler-metrics-port", "-1", "--monitor-port", "0", "--monitor-metrics-port", "-1",
        "--token", "token-alpha",
    ]  # fmt: skip
    env = tool_env(MLAAS_AUTH_TOKENS_FILE=str(tokens))
    up = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        endpoints = json.loads(up.stdout.readline())  # once the demo deployment is ready
        tls = ClientTLS(endpoints["tls_ca"], endpoints["tls_cert"], endpoints["tls_key"])
        assert Path(tls.ca_file).parent == tmp_path / "mesh" / "tls"
        for key in Path(tls.ca_file).parent.glob("*.key"):
            assert key.stat().st_mode & 0o777 == 0o600, key
        rows = np.array([[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]], dtype=np.float32)
        with SchedulerClient(endpoints["scheduler"], "token-alpha", tls=tls) as scheduler:
            # `mlaas up` deployed it over mTLS, and the scheduler health-checked its runtime so
            deployment = scheduler.get(endpoints["demo_deployment"])
            assert scheduler_pb2.DeploymentState.Name(deployment.state) == "DEPLOYMENT_STATE_READY"
            with DeploymentInference(scheduler, deployment.id, token="token-alpha") as runtime:  # its TLS
                assert runtime.infer({"X": rows})["label"].tolist() == [0, 2]
        with MonitorClient(endpoints["monitor"], "token-alpha", tls=tls) as monitor:  # feedback came over mTLS
            deadline = time.monotonic() + 60
            while True:
                try:
                    if monitor.report(deployment.id).samples_seen >= 2:
                        break
                except errors.NotFound:  # no feedback yet
                    pass
                assert time.monotonic() < deadline, "the runtime's feedback never reached the monitor"
                time.sleep(0.1)
        # every component serves mTLS, the runtime the scheduler started too
        for name in ("demo_endpoint", "registry", "scheduler", "monitor"):
            address = endpoints[name]
            assert check(address, tls) == "SERVING"
            assert check(address, ClientTLS(tls.ca_file)) == "UNAVAILABLE"  # no client certificate
            assert check(address, None) == "UNAVAILABLE"  # plaintext
        with InferenceClient(endpoints["demo_endpoint"], "token-beta", tls=tls) as beta, pytest.raises(errors.NotFound):
            beta.infer("iris-logreg", {"X": rows})  # alpha's deployment: not beta's to use
        without = ClientTLS(tls.ca_file)
        with InferenceClient(endpoints["demo_endpoint"], tls=without) as anonymous, pytest.raises(errors.Unavailable):
            anonymous.infer("iris-logreg", {"X": rows})

        rows_file = tmp_path / "rows.json"
        rows_file.write_text(json.dumps(rows.tolist()))
        flags = [
            "--tls-ca",
            tls.ca_file,
            "--tls-cert",
            tls.cert_file,
            "--tls-key",
            tls.key_file,
            "--token",
            "token-alpha",
        ]
        answer = cli("infer", endpoints["demo_deployment"], "--input", str(rows_file), "--json",
                     "--scheduler", endpoints["scheduler"], *flags)  # fmt: skip
        assert answer.returncode == 0, answer.stderr
        assert json.loads(answer.stdout)["label"] == [0, 2]
        found = cli("model", "find", "--task", "classification", "--json", "--registry", endpoints["registry"], *flags)
        assert found.returncode == 0, found.stderr
        assert "iris-logreg" in {r["model"]["description"]["name"] for r in json.loads(found.stdout)}
    finally:
        up.send_signal(signal.SIGINT)
        assert up.wait(60) == 0, up.stderr.read()


def test_a_client_never_sends_a_token_in_clear_beyond_loopback(monkeypatch, pki):
    """As servers with tokens refuse to listen beyond loopback in clear, clients refuse to send
    one there without a CA (no connection is made: the channel is never used)."""
    for name in ("MLAAS_TLS_CA", "MLAAS_ALLOW_PLAINTEXT"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ValueError, match=r"refusing to send a bearer token in clear to mesh\.invalid"):
        RegistryClient("mesh.invalid:50051", "token-alpha")
    with pytest.raises(ValueError, match=r"in clear to mesh\.invalid"):
        SchedulerClient("127.0.0.1:1,mesh.invalid:2", "token-alpha")
    for allowed in (
        lambda: RegistryClient("mesh.invalid:50051"),  # no token to leak
        lambda: RegistryClient("localhost:50051", "token-alpha"),
        lambda: RegistryClient("[::1]:50051", "token-alpha"),
        lambda: RegistryClient("mesh.invalid:50051", "token-alpha", tls=ClientTLS(str(pki.ca_cert))),
    ):
        allowed().close()
    monkeypatch.setenv("MLAAS_ALLOW_PLAINTEXT", "true")
    RegistryClient("mesh.invalid:50051", "token-alpha").close()
