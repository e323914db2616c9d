"""Unmodified peer clients against the runtime: tritonclient (health, metadata, config, unary,
and 10,000 streamed requests) and KServe's InferenceGRPCClient, each in its own interpreter."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import tool_env

pytestmark = pytest.mark.spawns  # see pyproject.toml

CLIENTS = Path(__file__).parent / "clients"


def run_client(script: str, *args: str) -> str:
    result = subprocess.run(
        [sys.executable, str(CLIENTS / script), *args], capture_output=True, text=True, env=tool_env(), timeout=300
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_tritonclient_streams_ten_thousand_requests(runtime, models_dir):
    assert run_client("triton_check.py", runtime.address, str(models_dir / "iris.onnx"), "10000").strip() == "ok 10000"


def test_kserve_grpc_client(runtime, models_dir):
    assert run_client("kserve_check.py", runtime.address, str(models_dir / "iris.onnx")).strip() == "ok"
