"""Every rpc of every service against every identity, driven by the proto descriptors: a new rpc
without an access rule fails here, and each identity reaches exactly the rpcs its rule lists
(real servers: registry, scheduler, monitor and a runtime, each with the tokens file and the
mesh key). A call let through may still fail later for its own reasons (an empty request); the
interceptor's refusals are told apart by their message."""

from __future__ import annotations

import grpc
import pytest
from google.protobuf import message_factory

from mlaas.oip import open_inference_v2_pb2
from mlaas.services import permissions
from mlaas.services.auth import AUDIENCES, MONITOR, REGISTRY, RUNTIME, SCHEDULER, TRAINER
from mlaas.v1 import monitor_pb2, node_pb2, registry_pb2, runtime_pb2, scheduler_pb2
from monitor_svc.app import build_monitor
from monitor_svc.settings import MonitorSettings
from registry_svc.app import build_registry
from registry_svc.settings import RegistrySettings
from tests.inference_svc.conftest import start_runtime, stop_runtime

pytestmark = pytest.mark.spawns  # see pyproject.toml


SERVICES = {
    "registry": registry_pb2.DESCRIPTOR.services_by_name["RegistryService"],
    "scheduler": scheduler_pb2.DESCRIPTOR.services_by_name["SchedulerService"],
    "monitor": monitor_pb2.DESCRIPTOR.services_by_name["MonitorService"],
    "runtime": open_inference_v2_pb2.DESCRIPTOR.services_by_name["GRPCInferenceService"],
    "node": node_pb2.DESCRIPTOR.services_by_name["NodeLabelsService"],  # on the runtime too
    "load": runtime_pb2.DESCRIPTOR.services_by_name["RuntimeService"],  # and this
}
REFUSALS = ("may not call", "is for the mesh's own components", "has no access rule")


def _path(method) -> str:
    return f"/{method.containing_service.full_name}/{method.name}"


def test_every_rpc_of_every_service_has_an_access_rule():
    methods = {_path(m) for service in SERVICES.values() for m in service.methods}
    assert methods == set(permissions.RULES), "each rpc needs exactly one rule in mlaas/services/permissions.py"


def _call(channel: grpc.Channel, method, token: str) -> tuple[grpc.StatusCode, str]:
    request = message_factory.GetMessageClass(method.input_type)()
    response = message_factory.GetMessageClass(method.output_type)
    kind = ("stream" if method.client_streaming else "unary") + "_" + ("stream" if method.server_streaming else "unary")
    call = getattr(channel, kind)(_path(method), request.SerializeToString, response.FromString)
    argument = iter([request]) if method.client_streaming else request
    try:
        answer = call(argument, metadata=[("authorization", f"Bearer {token}")], timeout=2)
        if method.server_streaming:
            for _ in answer:
                break
    except grpc.RpcError as err:
        return err.code(), err.details() or ""
    return grpc.StatusCode.OK, ""


@pytest.fixture
def servers(parts, identities, tmp_path, models_dir):
    registry_settings = RegistrySettings(data_dir=tmp_path / "registry", server=identities.server())
    registry = build_registry(registry_settings).start()
    scheduler = parts.start(server=identities.server())
    monitor = build_monitor(
        MonitorSettings(
            server=identities.server(),
            data_dir=tmp_path / "monitor",
            registry_address="127.0.0.1:1",
            scheduler_address="127.0.0.1:1",
        )
    ).start()
    runtime = start_runtime(
        tmp_path, "--workers", "1", "--model-uri", f"iris=file://{models_dir / 'iris.onnx'}",
        env={"MLAAS_AUTH_TOKENS_FILE": str(identities.tokens_file), "MLAAS_MESH_KEY_FILE": str(identities.key_file)},
    )  # fmt: skip
    yield {
        "registry": f"127.0.0.1:{registry.port}",
        "scheduler": f"127.0.0.1:{scheduler.server.port}",
        "monitor": f"127.0.0.1:{monitor.server.port}",
        "runtime": runtime.address,
        "node": runtime.address,
        "load": runtime.address,
    }
    stop_runtime(runtime)
    monitor.stop(0)
    registry.stop(0)


SERVERS_ROLE = {"registry": REGISTRY, "monitor": MONITOR}  # the audiences minted credentials name


def test_each_identity_reaches_exactly_the_rpcs_of_its_role(servers, identities):
    callers = {
        permissions.TENANT: identities.token("alpha"),
        REGISTRY: identities.token(REGISTRY),
        SCHEDULER: identities.token(SCHEDULER),
        MONITOR: identities.token(MONITOR),
        RUNTIME: identities.minted(RUNTIME, "d-0", "iris:1"),
        TRAINER: identities.minted(TRAINER, "j-0", "iris:1"),
    }
    wrong = []
    for server, service in SERVICES.items():
        with grpc.insecure_channel(servers[server]) as channel:
            for method in service.methods:
                allowed = permissions.RULES[_path(method)]
                for who, token in callers.items():
                    code, message = _call(channel, method, token)
                    refused = code == grpc.StatusCode.PERMISSION_DENIED and any(r in message for r in REFUSALS)
                    # A minted credential is shown only to the services in its audience.
                    elsewhere = who in AUDIENCES and SERVERS_ROLE.get(server) not in AUDIENCES[who]
                    if elsewhere:
                        refused = code == grpc.StatusCode.UNAUTHENTICATED and "is not meant for" in message
                    if refused == (who in allowed and not elsewhere) or (
                        code == grpc.StatusCode.UNAUTHENTICATED and not elsewhere
                    ):
                        wrong.append(f"{who} -> {_path(method)}: {code.name} {message}")
    assert wrong == []
