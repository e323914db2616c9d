"""`mlaas up --demo`: the embedded mesh as a user starts it, then discovery of the demo models
with the README's command, then Ctrl-C stops every child."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

from tests.conftest import tool_env


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


def test_up_demo_serves_ranked_demo_models(tmp_path):
    command = [
        sys.executable,
        "-m",
        "mlaas.cli",
        "up",
        "--demo",
        "--json",
        "--data-dir",
        str(tmp_path),
        "--registry-port",
        "0",
        "--registry-metrics-port",
        "0",
    ]
    up = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=tool_env())
    try:
        endpoints = json.loads(up.stdout.readline())  # printed once everything is ready
        find = subprocess.run(
            [
                sys.executable,
                "-m",
                "mlaas.cli",
                "model",
                "find",
                "--task",
                "classification",
                "--max-memory",
                "256Mi",
                "--json",
                "--registry",
                endpoints["registry"],
            ],
            capture_output=True,
            text=True,
            env=tool_env(),
            timeout=60,
            check=True,
        )
        results = json.loads(find.stdout)
        assert {r["model"]["description"]["name"] for r in results} == {
            "iris-logreg",
            "wine-forest",
            "breast-cancer-gb",
            "digits-mlp",
            "digits-forest",
        }
        assert [r["rank"] for r in results] == [1, 2, 3, 4, 5]
        assert all(r["model"]["reference_rows"] for r in results)
        children = _children(up.pid)
    finally:
        up.send_signal(signal.SIGINT)
        assert up.wait(60) == 0, up.stderr.read()
    assert len(children) == 2, "redis-server and the registry should have been running"
    assert not any(_alive(pid) for pid in children)
