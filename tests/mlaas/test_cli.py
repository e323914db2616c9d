"""The `mlaas model` commands as a user runs them: a child process against a real registry."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import tiny_onnx, tool_env

pytestmark = pytest.mark.spawns  # see pyproject.toml


@pytest.fixture
def mlaas(registry):
    def run(*args: str, ok: bool = True) -> subprocess.CompletedProcess:
        command = [sys.executable, "-m", "mlaas.cli", *args, "--registry", f"127.0.0.1:{registry.port}"]
        result = subprocess.run(command, capture_output=True, text=True, env=tool_env(), timeout=120)
        if ok:
            assert result.returncode == 0, result.stderr
        return result

    return run


def test_model_commands_end_to_end(mlaas, tmp_path):
    model = tmp_path / "tiny.onnx"
    model.write_bytes(tiny_onnx(features=4))
    description = tmp_path / "tiny.yaml"
    description.write_text(
        "task: regression\n"
        "family: linear_regression\n"
        "summary: a tiny linear model\n"
        "run_resources: {cpu: 250m, memory: 96Mi}\n"
        "explainability: {level: intrinsic, methods: [coefficients]}\n"
        "metrics: [{name: r2, value: 0.8, dataset: toy}]\n"
        "recipe:\n"
        "  steps:\n"
        "    - {estimator: sklearn.linear_model.Ridge, params: {alpha: 0.5}}\n"
    )
    registered = json.loads(
        mlaas("model", "register", str(model), "--name", "tiny", "--description", str(description), "--json").stdout
    )
    assert registered["created"] is True
    assert registered["model"]["description"]["run_resources"] == {
        "cpu_millicores": "250",
        "memory_bytes": str(96 * 2**20),
    }

    table = mlaas("model", "list").stdout
    assert table.splitlines()[0].split()[:3] == ["NAME", "VERSION", "TASK"]
    assert "tiny" in table and "regression" in table and "96Mi" in table

    found = json.loads(mlaas("model", "find", "--task", "regression", "--max-memory", "128Mi", "--json").stdout)
    assert [r["model"]["description"]["name"] for r in found] == ["tiny"]
    assert json.loads(mlaas("model", "find", "--max-cpu", "100m", "--json").stdout) == []

    assert "tiny@champion -> tiny:1" in mlaas("model", "alias", "tiny", "champion", "1").stdout
    shown = mlaas("model", "show", "tiny@champion").stdout
    assert "recipe         Ridge" in shown and "input          X FP32 [-1, 4]" in shown

    assert "deleted tiny:1" in mlaas("model", "delete", "tiny:1").stdout
    missing = mlaas("model", "show", "tiny:1", ok=False)
    assert missing.returncode == 1
    assert missing.stderr.strip() == "error: NOT_FOUND: model tiny:1 not found"


def test_bad_input_is_one_clear_line(mlaas, tmp_path):
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not onnx")
    result = mlaas("model", "register", str(junk), "--name", "junk", "--task", "classification", ok=False)
    assert result.returncode == 1
    assert result.stderr.startswith("error: INVALID_ARGUMENT: artifact is not a valid ONNX model")
    assert len(result.stderr.strip().splitlines()) == 1
    bad_quantity = mlaas("model", "find", "--max-memory", "lots", ok=False)
    assert bad_quantity.returncode == 2 and "not a memory quantity" in bad_quantity.stderr
    bad_task = mlaas("model", "find", "--task", "poetry", ok=False)
    assert bad_task.returncode == 1 and "not one of: classification" in bad_task.stderr


def test_global_options_go_before_or_after_the_command(registry):
    """`mlaas --json model list` as well as `mlaas model list --json`; an option given after the
    command wins over the same one before it; `--version` answers."""
    address = f"127.0.0.1:{registry.port}"

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "mlaas.cli", *args], capture_output=True, text=True,
                              env=tool_env(), timeout=120)  # fmt: skip

    before = run("--json", "--registry", address, "model", "list")
    after = run("model", "list", "--json", "--registry", address)
    assert before.returncode == after.returncode == 0, before.stderr + after.stderr
    assert json.loads(before.stdout) == json.loads(after.stdout)
    overridden = run("--registry", "127.0.0.1:1", "--json", "model", "list", "--registry", address)
    assert overridden.returncode == 0 and json.loads(overridden.stdout) == json.loads(before.stdout)
    from mlaas.cli import build_parser

    up = build_parser().parse_args(["up", "--tls", "--json"])  # a command's own option, not an abbreviation
    assert up.tls and up.json
    version = run("--version")
    assert version.returncode == 0 and version.stdout.startswith("mlaas 0.")


def test_an_unreachable_mesh_says_where_it_looked_and_what_to_do():
    from mlaas.services.net import free_port

    closed = f"127.0.0.1:{free_port()}"
    result = subprocess.run([sys.executable, "-m", "mlaas.cli", "model", "list", "--registry", closed],
                            capture_output=True, text=True, env=tool_env(), timeout=120)  # fmt: skip
    assert result.returncode == 1
    assert closed in result.stderr and "mlaas up" in result.stderr and "MLAAS_REGISTRY_ADDR" in result.stderr
