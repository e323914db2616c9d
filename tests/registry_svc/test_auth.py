"""Authentication and tenancy: bearer tokens from a tokens file, private models per tenant."""

from __future__ import annotations

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from mlaas import errors
from mlaas.client import RegistryClient
from mlaas.services.auth import MONITOR, RUNTIME, Authenticator
from mlaas.services.server import bind_host
from mlaas.services.settings import ServerSettings
from mlaas.v1 import registry_pb2, types_pb2
from tests.conftest import tiny_onnx
from tests.registry_svc.helpers import describe

PRIVATE = types_pb2.VISIBILITY_PRIVATE
PUBLIC = types_pb2.VISIBILITY_PUBLIC
REFERENCE = registry_pb2.ARTIFACT_KIND_REFERENCE_DATA


@pytest.fixture
def secured(start_registry, registry_settings, identities):
    settings = registry_settings.__class__(**{**registry_settings.__dict__, "server": identities.server()})
    return start_registry(settings)


def _client(server, token):
    return RegistryClient(f"127.0.0.1:{server.port}", token=token)


def test_every_rpc_but_health_needs_a_token(secured):
    for token, message in (
        (None, "missing 'authorization: Bearer <token>'"),
        ("wrong", "unknown bearer token"),
    ):
        with _client(secured, token) as anonymous, pytest.raises(errors.Unauthenticated, match=message):
            anonymous.find()
        with _client(secured, token) as anonymous, pytest.raises(errors.Unauthenticated):
            anonymous.register(tiny_onnx(), describe("sneaky"))
    with grpc.insecure_channel(f"127.0.0.1:{secured.port}") as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING


def test_tenants_see_only_their_own_private_models(secured):
    with _client(secured, "token-alpha") as alpha, _client(secured, "token-beta") as beta:
        alpha.register(tiny_onnx(seed=1), describe("alpha-secret", visibility=PRIVATE))
        alpha.register(tiny_onnx(seed=2), describe("alpha-public"))
        assert alpha.get("alpha-secret").owner == "alpha"
        assert {r.model.description.name for r in alpha.find()} == {"alpha-secret", "alpha-public"}

        assert {r.model.description.name for r in beta.find()} == {"alpha-public"}
        assert [m.description.name for m in beta.list()] == ["alpha-public"]
        with pytest.raises(errors.NotFound):
            beta.get("alpha-secret")
        with pytest.raises(errors.NotFound):
            beta.delete("alpha-secret", 1)
        with pytest.raises(errors.PermissionDenied, match="is not yours to"):
            beta.set_alias("alpha-public", "champion", 1)
        with pytest.raises(errors.PermissionDenied, match="is not yours to"):
            beta.delete("alpha-public", 1)
        with pytest.raises(errors.PermissionDenied, match="is not yours to"):
            beta.register(tiny_onnx(seed=3), describe("alpha-public"))
        # The owner still can.
        alpha.set_alias("alpha-public", "champion", 1)
        alpha.delete("alpha-secret", 1)


def test_the_monitor_role_maintains_existing_models_for_their_owners(secured, tmp_path, identities):
    """The Monitor reads every model it monitors, registers a retrained version and moves the
    alias on the owner's behalf; it cannot create a name, delete, browse, or make a private
    model public."""
    with _client(secured, "token-alpha") as alpha, _client(secured, identities.token(MONITOR)) as monitor:
        artifact = tiny_onnx(seed=4)
        alpha.register(artifact, describe("alpha-secret", visibility=PRIVATE))
        assert monitor.get("alpha-secret").owner == "alpha"
        assert monitor.download("alpha-secret:1", tmp_path / "fetched.onnx").owner == "alpha"
        assert (tmp_path / "fetched.onnx").read_bytes() == artifact

        retrained = monitor.register(tiny_onnx(seed=5), describe("alpha-secret", visibility=PUBLIC)).model
        assert (retrained.version, retrained.owner) == (2, "alpha")  # the owner's, not the mesh's
        assert retrained.description.visibility == PRIVATE  # as the model was: the role cannot publish it
        monitor.set_alias("alpha-secret", "champion", 2)
        assert alpha.get("alpha-secret@champion").version == 2  # alpha sees its new version
        with pytest.raises(errors.PermissionDenied, match="the mesh's own identity cannot register versions of"):
            monitor.register(tiny_onnx(seed=6), describe("mesh-made"))
        for call in (lambda: monitor.delete("alpha-secret", 1), lambda: list(monitor.find())):
            with pytest.raises(errors.PermissionDenied, match="mlaas-monitor role may not call"):
                call()


def test_a_minted_runtime_credential_reads_its_one_version(secured, tmp_path, identities):
    with _client(secured, "token-alpha") as alpha:
        alpha.register(tiny_onnx(seed=7), describe("alpha-secret", visibility=PRIVATE))
        alpha.register(tiny_onnx(seed=8), describe("alpha-secret", visibility=PRIVATE))
        alpha.register(tiny_onnx(seed=9), describe("alpha-other", visibility=PRIVATE))
    with _client(secured, identities.minted(RUNTIME, "d-1", "alpha-secret:2")) as runtime:
        assert runtime.download("alpha-secret:2", tmp_path / "m.onnx").version == 2
        for ref in ("alpha-secret:1", "alpha-other:1", "alpha-other"):
            with pytest.raises(errors.NotFound):
                runtime.get(ref)
        with pytest.raises(errors.PermissionDenied, match="may not call"):
            runtime.register(tiny_onnx(seed=10), describe("alpha-secret"))
    forged = identities.minted(RUNTIME, "d-1", "alpha-secret:2")[:-4] + "0000"
    with _client(secured, forged) as stranger, pytest.raises(errors.Unauthenticated):
        stranger.get("alpha-secret:2")


def test_open_mode_binds_loopback_only():
    open_auth = Authenticator(None)
    assert bind_host(ServerSettings(host="0.0.0.0"), open_auth) == "127.0.0.1"
    assert bind_host(ServerSettings(host="0.0.0.0", allow_open_remote=True), open_auth) == "0.0.0.0"
    # with auth, beyond loopback needs TLS (tests/security/test_tls.py) or plaintext allowed
    assert bind_host(ServerSettings(host="0.0.0.0", allow_plaintext=True), Authenticator({"t": "x"})) == "0.0.0.0"


def test_tokens_file_errors(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("- just\n- a list\n")
    with pytest.raises(ValueError, match="expected a mapping of token to tenant"):
        Authenticator.from_file(bad)


def test_reference_data_is_its_owners_even_of_a_public_model(secured, tmp_path, identities):
    """A retrained version's reference data is recent production inputs: never another tenant's
    to download, though the model is public."""
    reference = np.random.default_rng(0).normal(size=(8, 4)).astype(np.float32)
    with _client(secured, "token-alpha") as alpha:
        alpha.register(tiny_onnx(seed=11), describe("alpha-public"), reference_data=reference)
        alpha.download("alpha-public:1", tmp_path / "own.npy", kind=REFERENCE)
    with _client(secured, "token-beta") as beta:
        assert beta.download("alpha-public:1", tmp_path / "model.onnx").reference_rows == 8
        with pytest.raises(errors.PermissionDenied, match="is its owner's"):
            beta.download("alpha-public:1", tmp_path / "theirs.npy", kind=REFERENCE)
    with _client(secured, identities.token(MONITOR)) as monitor:
        monitor.download("alpha-public:1", tmp_path / "monitored.npy", kind=REFERENCE)
    assert np.array_equal(np.load(tmp_path / "monitored.npy"), reference)
