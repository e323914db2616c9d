"""`mlaas up --demo`: the embedded mesh as a user starts it, then discovery of the demo models
with the README's command, then Ctrl-C stops every child."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import numpy as np
import pytest

from mlaas import errors
from mlaas.client import RegistryClient, SchedulerClient
from mlaas.export import register_sklearn
from mlaas.inference_client import DeploymentInference, InferenceClient
from mlaas.v1 import types_pb2
from tests.conftest import tool_env

pytestmark = pytest.mark.spawns  # see pyproject.toml


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().split()[2] != "Z"


def _children(parent: int) -> list[int]:
    found = []
    for stat in os.listdir("/proc"):
        if stat.isdigit():
            try:
                with open(f"/proc/{stat}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == parent:
                found.append(int(stat))
    return found


def _cli(*args: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "mlaas.cli", *args], capture_output=True, text=True, env=tool_env(), timeout=120
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_up_demo_serves_ranked_models_and_a_deployment(tmp_path):
    command = [
        sys.executable, "-m", "mlaas.cli", "up", "--demo", "--json", "--data-dir", str(tmp_path),
        "--registry-port", "0", "--registry-metrics-port", "0", "--scheduler-port", "0",
        "--scheduler-metrics-port", "0", "--monitor-port", "0", "--monitor-metrics-port", "0",
    ]  # fmt: skip
    up = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=tool_env())
    try:
        endpoints = json.loads(up.stdout.readline())  # printed once everything is ready
        found = json.loads(
            _cli("model", "find", "--task", "classification", "--max-memory", "512Mi", "--json",
                 "--registry", endpoints["registry"])
        )  # fmt: skip
        assert {r["model"]["description"]["name"] for r in found} == {
            "iris-logreg", "wine-forest", "breast-cancer-gb", "digits-mlp", "digits-forest"
        }  # fmt: skip
        assert [r["rank"] for r in found] == [1, 2, 3, 4, 5]
        assert all(r["model"]["reference_rows"] for r in found)

        rows = tmp_path / "rows.json"
        rows.write_text(json.dumps([[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]))
        answer = json.loads(
            _cli("infer", endpoints["demo_deployment"], "--input", str(rows), "--json",
                 "--scheduler", endpoints["scheduler"])
        )  # fmt: skip
        assert answer["label"] == [0, 2]
        ids = answer["request_ids"]  # made up by the CLI, one per row: what labels quote
        assert len(ids) == 2 and ids[0].endswith("/0") and ids[1] == ids[0][:-1] + "1"
        labels = tmp_path / "labels.csv"
        labels.write_text(f"{ids[0]},0\n{ids[1]},1\n")  # the loop closed with the CLI alone
        deadline = time.monotonic() + 30
        while "0 wait for their prediction" not in (
            said := _cli("feedback", endpoints["demo_deployment"], "--labels", str(labels), "--monitor",
                         endpoints["monitor"])
        ):  # fmt: skip
            assert time.monotonic() < deadline, said  # the runtime sends its records every 0.2 s
            time.sleep(0.3)
        assert said.startswith("2 labels stored")
        deployments = json.loads(_cli("deployments", "--json", "--scheduler", endpoints["scheduler"]))
        assert [d["state"] for d in deployments] == ["DEPLOYMENT_STATE_READY"]
        assert deployments[0]["http_endpoints"] == [endpoints["demo_rest_endpoint"]]
        body = json.dumps(
            {"inputs": [{"name": "X", "datatype": "FP32", "shape": [1, 4], "data": [5.1, 3.5, 1.4, 0.2]}]}
        )
        rest = f"http://{endpoints['demo_rest_endpoint']}/v2/models/iris-logreg/infer"
        with urllib.request.urlopen(urllib.request.Request(rest, data=body.encode()), timeout=30) as reply:
            assert json.loads(reply.read())["outputs"][0]["data"] == [0]  # the demo replica answers REST too
        delete = [sys.executable, "-m", "mlaas.cli", "model", "delete", "iris-logreg:1"]
        refused = subprocess.run(
            [*delete, "--registry", endpoints["registry"]], capture_output=True, text=True, env=tool_env(), timeout=60
        )
        assert refused.returncode == 1
        assert "FAILED_PRECONDITION: model iris-logreg:1 cannot be deleted: it has 1 live deployment" in refused.stderr

        addresses = ["--registry", endpoints["registry"], "--scheduler", endpoints["scheduler"],
                     "--monitor", endpoints["monitor"]]  # fmt: skip
        demo = json.loads(_cli("demo", "drift", "--json", *addresses))
        assert demo["retraining_state"] == "RETRAINING_STATE_ROLLED_OUT" and demo["version_now"] == 2
        assert "DRIFT_KIND_PERFORMANCE" in demo["drift_events"] and demo["live_requests"] > 0
        assert demo["accuracy_before"] > 0.85 > demo["accuracy_after_drift"]
        children = _children(up.pid)
    finally:
        up.send_signal(signal.SIGINT)
        assert up.wait(60) == 0, up.stderr.read()
    assert len(children) == 4, "redis-server, the registry, the scheduler and the monitor should have been running"
    assert not any(_alive(pid) for pid in children)
    with socket.socket() as probe:  # the demo replica went down with the mesh
        host, port = endpoints["demo_endpoint"].rsplit(":", 1)
        assert probe.connect_ex((host, int(port))) != 0


def test_up_with_a_tokens_file_serves_a_tenants_private_model(tmp_path, iris_model):
    """With auth on, the runtime fetches the tenant's private model with the credential the
    scheduler minted for it (with the mesh key `mlaas up` makes), and the registry's deletion
    guard, with the registry's role token, sees the tenant's deployment."""
    model, X, _ = iris_model
    tokens = tmp_path / "tokens.yaml"
    tokens.write_text("token-alpha: alpha\n")
    command = [
        sys.executable, "-m", "mlaas.cli", "up", "--json", "--data-dir", str(tmp_path / "mesh"),
        "--registry-port", "0", "--registry-metrics-port", "-1", "--scheduler-port", "0",
        "--scheduler-metrics-port", "-1", "--monitor-port", "0", "--monitor-metrics-port", "-1",
    ]  # fmt: skip
    env = tool_env(MLAAS_AUTH_TOKENS_FILE=str(tokens))
    up = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        endpoints = json.loads(up.stdout.readline())
        with (
            RegistryClient(endpoints["registry"], "token-alpha") as registry,
            SchedulerClient(endpoints["scheduler"], "token-alpha") as scheduler,
        ):
            register_sklearn(registry, model, "alpha-iris", X, visibility=types_pb2.VISIBILITY_PRIVATE)
            deployment = scheduler.wait_ready(scheduler.deploy("alpha-iris").id)
            with DeploymentInference(scheduler, deployment.id, token="token-alpha") as runtime:
                assert np.array_equal(runtime.infer({"X": X[:5]})["label"], model.predict(X[:5]))
            with InferenceClient(deployment.endpoints[0]) as anonymous, pytest.raises(errors.Unauthenticated):
                anonymous.infer("alpha-iris", {"X": X[:1]})  # the runtime asks for a token too
            with pytest.raises(errors.FailedPrecondition, match="it has 1 live deployment"):
                registry.delete("alpha-iris", 1)
        for secret in ("mesh-tokens.yaml", "mesh.key", "redis/password", "redis/redis.conf"):
            assert (tmp_path / "mesh" / secret).stat().st_mode & 0o077 == 0, secret
    finally:
        up.send_signal(signal.SIGINT)
        assert up.wait(60) == 0, up.stderr.read()
