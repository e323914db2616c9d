"""The registry servicer in grpcio-testing's in-memory server (no sockets): statuses and
messages for bad requests, over a real SQLite catalogue in a temporary directory."""

from __future__ import annotations

import grpc
import grpc_testing
import pytest

from mlaas.services.auth import Authenticator
from mlaas.services.settings import ServerSettings
from mlaas.v1 import registry_pb2, types_pb2
from registry_svc.artifacts import LocalArtifactStore
from registry_svc.catalog import Catalog
from registry_svc.guards import AllowAll
from registry_svc.models import ModelRegistry
from registry_svc.servicer import RegistryServicer
from registry_svc.settings import RegistrySettings
from tests.conftest import tiny_onnx

SERVICE = registry_pb2.DESCRIPTOR.services_by_name["RegistryService"]


@pytest.fixture
def server(tmp_path):
    settings = RegistrySettings(server=ServerSettings(), data_dir=tmp_path)
    models = ModelRegistry(settings, Catalog(tmp_path / "r.sqlite3"), LocalArtifactStore(tmp_path / "a"), AllowAll())
    servicer = RegistryServicer(models, Authenticator(None))
    return grpc_testing.server_from_dictionary({SERVICE: servicer}, grpc_testing.strict_real_time())


def unary(server, method, request):
    rpc = server.invoke_unary_unary(SERVICE.methods_by_name[method], (), request, None)
    response, _, code, details = rpc.termination()
    return response, code, details


def test_register_then_get(server):
    rpc = server.invoke_stream_unary(SERVICE.methods_by_name["RegisterModel"], (), None)
    rpc.send_request(
        registry_pb2.RegisterModelRequest(
            description=types_pb2.ModelDescription(name="unit", task=types_pb2.TASK_REGRESSION)
        )
    )
    rpc.send_request(registry_pb2.RegisterModelRequest(artifact_chunk=tiny_onnx()))
    rpc.requests_closed()
    response, _, code, _ = rpc.termination()
    assert code == grpc.StatusCode.OK
    assert response.model.version == 1
    got, code, _ = unary(server, "GetModel", registry_pb2.GetModelRequest(ref=types_pb2.ModelRef(name="unit")))
    assert code == grpc.StatusCode.OK and got.model.signature.inputs[0].name == "X"


@pytest.mark.parametrize(
    ("method", "request_message", "code", "details"),
    [
        (
            "GetModel",
            registry_pb2.GetModelRequest(ref=types_pb2.ModelRef(name="absent")),
            grpc.StatusCode.NOT_FOUND,
            "model absent not found",
        ),
        (
            "GetModel",
            registry_pb2.GetModelRequest(ref=types_pb2.ModelRef(name="UPPER")),
            grpc.StatusCode.INVALID_ARGUMENT,
            "model name 'UPPER' is invalid",
        ),
        (
            "SetAlias",
            registry_pb2.SetAliasRequest(name="a", alias="champion", version=0),
            grpc.StatusCode.INVALID_ARGUMENT,
            "version must be 1 or more",
        ),
        (
            "DeleteModelVersion",
            registry_pb2.DeleteModelVersionRequest(name="a", version=3),
            grpc.StatusCode.NOT_FOUND,
            "model a:3 not found",
        ),
        (
            "ListModels",
            registry_pb2.ListModelsRequest(page_size=-1),
            grpc.StatusCode.INVALID_ARGUMENT,
            "page_size must not be negative",
        ),
        (
            "FindModels",
            registry_pb2.FindModelsRequest(page_token="bm9wZQ=="),
            grpc.StatusCode.INVALID_ARGUMENT,
            "page_token is malformed",
        ),
    ],
)
def test_bad_requests_get_a_clear_status(server, method, request_message, code, details):
    _, got_code, got_details = unary(server, method, request_message)
    assert got_code == code
    assert details in got_details


def test_register_without_artifact(server):
    rpc = server.invoke_stream_unary(SERVICE.methods_by_name["RegisterModel"], (), None)
    rpc.send_request(
        registry_pb2.RegisterModelRequest(
            description=types_pb2.ModelDescription(name="empty", task=types_pb2.TASK_REGRESSION)
        )
    )
    rpc.requests_closed()
    _, _, code, details = rpc.termination()
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert "no artifact bytes received" in details
