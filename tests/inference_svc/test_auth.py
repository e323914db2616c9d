"""The runtime behind bearer tokens: inference needs a token, health checks do not."""

from __future__ import annotations

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from mlaas import errors
from mlaas.inference_client import InferenceClient
from tests.inference_svc.conftest import start_runtime, stop_runtime

pytestmark = pytest.mark.spawns  # see pyproject.toml


def test_tokens_guard_every_rpc_but_health(tmp_path, models_dir):
    tokens = tmp_path / "tokens.yaml"
    tokens.write_text("s3cret: team-a\n")
    rt = start_runtime(
        tmp_path, "--workers", "1", "--model-uri", f"iris=file://{models_dir / 'iris.onnx'}",
        env={"MLAAS_AUTH_TOKENS_FILE": str(tokens)},
    )  # fmt: skip
    rows = np.ones((1, 4), np.float32)
    try:
        with InferenceClient(rt.address) as anonymous, pytest.raises(errors.Unauthenticated, match="Bearer"):
            anonymous.infer("iris", {"X": rows})
        with InferenceClient(rt.address, token="wrong") as stranger, pytest.raises(errors.Unauthenticated):
            stranger.ready()
        with InferenceClient(rt.address, token="s3cret") as member:
            assert member.infer("iris", {"X": rows})["label"].shape == (1,)
            assert [r.error for r in member.stream("iris", [{"X": rows}])] == [""]
        with grpc.insecure_channel(rt.address) as channel:
            reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
    finally:
        stop_runtime(rt)
