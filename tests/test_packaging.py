"""The package imports beside tritonclient[grpc] (protobuf 6.x), each in a fresh interpreter."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import tool_env

pytestmark = pytest.mark.spawns  # see pyproject.toml


def _python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=tool_env(), timeout=120)


def test_mesh_stubs_and_client_import_beside_tritonclient():
    result = _python(
        "import tritonclient.grpc, google.protobuf as pb\n"
        "import mlaas.client, mlaas.v1.registry_pb2, mlaas.v1.scheduler_pb2, mlaas.v1.monitor_pb2\n"
        "import sys\n"
        "assert 'mlaas.oip' not in sys.modules, 'the OIP stubs must load only on demand'\n"
        "print(pb.__version__)\n"
    )
    assert result.returncode == 0, result.stderr
    major = int(result.stdout.strip().split(".")[0])
    assert major >= 6


def test_oip_stubs_define_the_open_inference_protocol():
    result = _python(
        "from mlaas.oip import open_inference_v2_pb2 as pb\n"
        "service = pb.DESCRIPTOR.services_by_name['GRPCInferenceService']\n"
        "assert service.full_name == 'inference.GRPCInferenceService'\n"
        "stream = service.methods_by_name['ModelStreamInfer']\n"
        "assert stream.client_streaming and stream.server_streaming\n"
        "fields = {f.name: f.number for f in pb.ModelStreamInferResponse.DESCRIPTOR.fields}\n"
        "assert fields == {'error_message': 1, 'infer_response': 2}, fields\n"
    )
    assert result.returncode == 0, result.stderr


def test_oip_wire_numbers_match_tritonclient():
    """Every message and field we share with tritonclient has the same number and type."""
    ours = _python(
        "from mlaas.oip import open_inference_v2_pb2 as pb\n"
        "from google.protobuf import descriptor_pb2\n"
        "fd = descriptor_pb2.FileDescriptorProto(); pb.DESCRIPTOR.CopyToProto(fd)\n"
        "print(fd.SerializeToString().hex())\n"
    )
    theirs = _python(
        "from tritonclient.grpc import service_pb2 as pb\n"
        "from google.protobuf import descriptor_pb2\n"
        "fd = descriptor_pb2.FileDescriptorProto(); pb.DESCRIPTOR.CopyToProto(fd)\n"
        "print(fd.SerializeToString().hex())\n"
    )
    assert ours.returncode == 0 and theirs.returncode == 0, ours.stderr + theirs.stderr
    from google.protobuf import descriptor_pb2

    def fields(hex_text: str) -> dict:
        fd = descriptor_pb2.FileDescriptorProto.FromString(bytes.fromhex(hex_text.strip()))
        table = {}

        def walk(message, prefix):
            for field in message.field:
                table[f"{prefix}{message.name}.{field.name}"] = (field.number, field.type, field.label)
            for nested in message.nested_type:
                walk(nested, f"{prefix}{message.name}.")

        for message in fd.message_type:
            walk(message, "")
        methods = {
            f"rpc {m.name}": (m.input_type, m.output_type, m.client_streaming, m.server_streaming)
            for s in fd.service
            for m in s.method
        }
        return {**table, **methods}

    mine, triton = fields(ours.stdout), fields(theirs.stdout)
    shared = set(mine) & set(triton)
    # Triton keeps ModelConfig and its parts in model_config.proto; everything else is shared.
    config_parts = (
        "ModelConfig.",
        "ModelInput.",
        "ModelOutput.",
        "ModelInstanceGroup.",
        "ModelDynamicBatching.",
        "ModelParameter.",
    )
    assert {k for k in mine if not k.startswith(config_parts)} <= shared
    assert {k: mine[k] for k in shared} == {k: triton[k] for k in shared}
    assert {k for k in mine if k.startswith("rpc ")} <= set(triton)
