"""Open streams by kind and by caller (mlaas.services.stream_slots): in process for the rules,
then on a real registry with four tenants, where three hold every RegisterModel stream they may
(idle uploads that send only the description, as the probe did) and the fourth still uploads and
downloads, unary calls and health still answer at once, and an idle upload is closed."""

from __future__ import annotations

import dataclasses
import threading
import time

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from mlaas.client import RegistryClient
from mlaas.services.auth import RUNTIME, Authenticator, MeshKey, add_mesh_identities
from mlaas.services.settings import ServerSettings
from mlaas.services.stream_slots import Caller, StreamSlots
from mlaas.v1 import registry_pb2, registry_pb2_grpc, types_pb2
from registry_svc.app import build_registry
from registry_svc.settings import RegistrySettings
from tests.conftest import tiny_onnx
from tests.registry_svc.helpers import describe

UPLOAD, WATCH = "/mlaas.v1.RegistryService/RegisterModel", "/mlaas.v1.MonitorService/WatchDrift"
TENANTS = ("alpha", "beta", "gamma", "delta")


def fill(slots: StreamSlots, kind: str, caller: Caller) -> int:
    """Opens streams of `kind` for `caller` until refused; how many it got."""
    count = 0
    while slots.acquire(kind, caller)[0] is None:
        count += 1
    return count


def test_callers_share_a_kind_and_a_newcomer_always_finds_a_slot():
    slots = StreamSlots(Authenticator({t: t for t in TENANTS}), per_kind=12, per_caller=4, reserved=2)
    held = {t: fill(slots, UPLOAD, Caller(t, "", False)) for t in TENANTS[:3]}
    assert held == {"alpha": 4, "beta": 4, "gamma": 2}  # each takes at most what it leaves free
    refused, _ = slots.acquire(UPLOAD, Caller("gamma", "", False))
    assert "you have 2 RegisterModel streams open here and 2 are free" in refused
    assert slots.acquire(UPLOAD, Caller("delta", "", False)) == (None, False)
    assert fill(slots, WATCH, Caller("alpha", "", False)) == 4  # another kind: its own slots

    runtime = Caller("mlaas-runtime", "deployment-1", True)
    assert [slots.acquire(UPLOAD, runtime) for _ in range(2)] == [(None, True)] * 2  # the reserve
    slots.release(UPLOAD, runtime, True)
    assert slots.acquire(UPLOAD, runtime) == (None, True)
    assert slots.open(UPLOAD) == 4 + 4 + 2 + 1 + 2


def test_without_auth_one_caller_may_take_every_slot_of_a_kind():
    slots = StreamSlots(Authenticator(None), per_kind=5, per_caller=2, reserved=1)
    assert fill(slots, UPLOAD, slots.caller(())) == 5
    assert "all 5 RegisterModel streams here are open" in slots.acquire(UPLOAD, slots.caller(()))[0]


@pytest.fixture
def four_tenants(tmp_path):
    tenants = tmp_path / "tenants.yaml"
    tenants.write_text("".join(f"token-{t}: {t}\n" for t in TENANTS))
    roles = add_mesh_identities(tenants, tmp_path)
    server = ServerSettings(
        port=0, metrics_port=-1, shutdown_grace_seconds=1, auth_tokens_file=str(tmp_path / "mesh-tokens.yaml"),
        mesh_key_file=str(tmp_path / "mesh.key"), max_workers=4,
    )  # fmt: skip
    return server, {**{t: f"token-{t}" for t in TENANTS}, **roles}


def _registry(tmp_path, four_tenants, **changes):
    """(a started registry of the four tenants, with `changes` to its server settings; their tokens)."""
    server, tokens = four_tenants
    server = dataclasses.replace(server, **changes)
    return build_registry(RegistrySettings(data_dir=tmp_path / "registry", server=server)).start(), tokens


def wait_for(condition, seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "the condition never held"
        time.sleep(0.01)


def test_three_tenants_holding_their_share_of_uploads_leave_the_fourth_its_upload_and_download(
    tmp_path, four_tenants, iris_model
):
    from mlaas.export import sklearn_to_onnx

    server, tokens = four_tenants
    registry = build_registry(RegistrySettings(data_dir=tmp_path / "registry", server=server)).start()
    address = f"127.0.0.1:{registry.port}"
    release = threading.Event()
    model, X, _ = iris_model
    artifact = sklearn_to_onnx(model, X)

    def idle_upload():
        yield registry_pb2.RegisterModelRequest(description=describe("stalled"))
        release.wait(120)

    try:
        with grpc.insecure_channel(address) as channel:
            stub = registry_pb2_grpc.RegistryServiceStub(channel)
            held: dict[str, int] = {}
            calls = []  # kept: a call whose future is collected is cancelled
            for tenant in TENANTS[:3]:
                metadata = [("authorization", f"Bearer {tokens[tenant]}")]
                while True:  # one at a time, each counted (or refused) before the next
                    before = registry.streams.open(UPLOAD)
                    call = stub.RegisterModel.future(idle_upload(), metadata=metadata, timeout=120)
                    calls.append(call)
                    wait_for(lambda b=before, c=call: registry.streams.open(UPLOAD) > b or c.done())
                    if call.done():
                        assert call.exception().code() == grpc.StatusCode.RESOURCE_EXHAUSTED
                        break
                    held[tenant] = held.get(tenant, 0) + 1
            assert held == {"alpha": 4, "beta": 4, "gamma": 4}  # and 4 of the 16 left for others

            with RegistryClient(address, tokens["delta"], timeout=30) as delta:
                version = delta.register(artifact, describe("delta-model")).model.version
                delta.download(f"delta-model:{version}", tmp_path / "model.onnx")
                assert (tmp_path / "model.onnx").read_bytes() == artifact
                assert [m.description.name for m in delta.list()] == ["delta-model"]
            reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
            runtime = MeshKey.from_file(server.mesh_key_file).mint(RUNTIME, "deployment-1", f"delta-model:{version}")
            with RegistryClient(address, runtime, timeout=30) as replica:
                replica.download(f"delta-model:{version}", tmp_path / "again.onnx")
    finally:
        release.set()
        registry.stop(0)


def test_an_upload_that_sends_nothing_is_closed_and_its_slot_comes_back(tmp_path, four_tenants):
    registry, tokens = _registry(tmp_path, four_tenants, stream_idle_seconds=0.5, max_streams=1)
    release = threading.Event()

    def stalled():
        yield registry_pb2.RegisterModelRequest(description=describe("stalled"))
        release.wait(60)

    try:
        with grpc.insecure_channel(f"127.0.0.1:{registry.port}") as channel:
            stub = registry_pb2_grpc.RegistryServiceStub(channel)
            metadata = [("authorization", f"Bearer {tokens['alpha']}")]
            with pytest.raises(grpc.RpcError) as closed:
                stub.RegisterModel(stalled(), metadata=metadata, timeout=60)
            assert closed.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
            assert "sent nothing for 0.5 s (MLAAS_STREAM_IDLE_SECONDS)" in closed.value.details()
            wait_for(lambda: registry.streams.open(UPLOAD) == 0)
            release.set()
            with pytest.raises(grpc.RpcError) as served:  # the one slot is free again
                stub.RegisterModel(iter([registry_pb2.RegisterModelRequest(description=describe("x"))]),
                                   metadata=[("authorization", f"Bearer {tokens['beta']}")], timeout=30)  # fmt: skip
            assert served.value.code() == grpc.StatusCode.INVALID_ARGUMENT  # no artifact: served, not refused
        assert not list((tmp_path / "registry" / "staging").glob("*")), "the closed upload left a file"
    finally:
        release.set()
        registry.stop(0)


def test_an_upload_that_drips_is_closed_at_the_most_a_stream_may_stay_open(tmp_path, four_tenants):
    registry, tokens = _registry(tmp_path, four_tenants, stream_idle_seconds=0.5, stream_max_seconds=1.5)
    stop = threading.Event()

    def dripping():  # never idle for the idle time, never done
        yield registry_pb2.RegisterModelRequest(description=describe("drip"))
        while not stop.wait(0.1):
            yield registry_pb2.RegisterModelRequest(artifact_chunk=b"x")

    try:
        with grpc.insecure_channel(f"127.0.0.1:{registry.port}") as channel:
            stub = registry_pb2_grpc.RegistryServiceStub(channel)
            started = time.monotonic()
            with pytest.raises(grpc.RpcError) as closed:
                stub.RegisterModel(dripping(), metadata=[("authorization", f"Bearer {tokens['alpha']}")], timeout=60)
            assert closed.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
            assert "open for 1.5 s, the most it may (MLAAS_STREAM_MAX_SECONDS)" in closed.value.details()
            assert time.monotonic() - started < 30
            wait_for(lambda: registry.streams.open(UPLOAD) == 0)
    finally:
        stop.set()
        registry.stop(0)


def test_a_download_nobody_reads_gives_its_slot_back(tmp_path, four_tenants):
    """A client that opens downloads and stops reading once held their slots and threads until it
    went away: a send that has not gone out within the idle time cancels the call."""
    registry, tokens = _registry(tmp_path, four_tenants, stream_idle_seconds=0.5)
    download = "/mlaas.v1.RegistryService/DownloadArtifact"
    try:
        with RegistryClient(f"127.0.0.1:{registry.port}", tokens["alpha"]) as alpha:  # 8 MiB: more than is buffered
            alpha.register(tiny_onnx(features=1 << 21), describe("big"))
        # No window growth (BDP probing): the 8 MiB must not fit in what the client takes unread.
        with grpc.insecure_channel(f"127.0.0.1:{registry.port}", options=[("grpc.http2.bdp_probe", 0)]) as channel:
            stub = registry_pb2_grpc.RegistryServiceStub(channel)
            request = registry_pb2.DownloadArtifactRequest(
                ref=types_pb2.ModelRef(name="big"), kind=registry_pb2.ARTIFACT_KIND_MODEL
            )
            unread = stub.DownloadArtifact(
                request, metadata=[("authorization", f"Bearer {tokens['alpha']}")], timeout=60
            )
            next(unread)  # then nothing more is read
            wait_for(lambda: registry.streams.open(download) == 1)
            wait_for(lambda: registry.streams.open(download) == 0)  # cancelled by the server
            with pytest.raises(grpc.RpcError) as cancelled:
                list(unread)
            assert cancelled.value.code() == grpc.StatusCode.CANCELLED
    finally:
        registry.stop(0)
