"""The fork server (mlaas/services/fork_server.py) through the local backend's client of it
(scheduler_svc/backends/fork_client.py), with a child that reports what it got
(tests/mlaas/fork_child.py): a forked child is kept as separate as one started cold, its
credential never enters the memory every later child inherits, its exit code comes back as a
Popen's would, and the server goes with its client once its children have."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil

from scheduler_svc.backends.fork_client import ForkServer
from tests.conftest import process_memory, tool_env

SECRET = "mlaas-scoped.secret-of-one-child"


def start_server(tmp_path: Path) -> ForkServer:
    server = ForkServer(sys.executable, "tests.mlaas.fork_child", tool_env(), tmp_path / "server.log")
    assert server.ready(wait_seconds=60), (tmp_path / "server.log").read_text()
    return server


def exit_code(server: ForkServer, pid: int) -> int:
    deadline = time.monotonic() + 30
    while (code := server.exit_code(pid)) is None:
        assert time.monotonic() < deadline, f"no word of child {pid}'s end"
    return code


def said(log: Path) -> dict:
    return json.loads(log.read_text().splitlines()[1])  # after "forked by ..."


def test_a_child_has_its_own_environment_session_log_and_command_line_and_its_exit_code(tmp_path):
    server = start_server(tmp_path)
    try:
        env = {"MLAAS_TOKEN": SECRET, "PATH": os.environ["PATH"]}
        pid = server.start(["exit", "3"], env, tmp_path / "child.log")
        assert pid is not None
        assert exit_code(server, pid) == 3
        child = said(tmp_path / "child.log")
        assert child["env"] == env  # exactly its own: nothing of the server's
        assert child["sid"] == pid  # its own session, which the backend kills as one group
        assert set(child["open"]) - {0, 1, 2} <= {max(child["open"])}  # the fd of the listing itself
        assert f"forked by test server {server.pid}" in (tmp_path / "child.log").read_text()
        assert not list(tmp_path.glob(".child-*"))  # the environment's file, read and gone
        assert not any(SECRET.encode() in mapping for mapping in process_memory(server.pid))  # every child inherits it
    finally:
        server.stop()


def test_a_child_that_raises_or_is_killed_reports_as_a_cold_one_and_the_server_goes_on(tmp_path):
    server = start_server(tmp_path)
    try:
        env = {"MLAAS_CHILD": "1"}
        raising = server.start(["raise"], env, tmp_path / "raising.log")
        assert raising is not None and exit_code(server, raising) == 1
        assert "RuntimeError: the child failed" in (tmp_path / "raising.log").read_text()
        for argv, code in ((["sys.exit"], 0), (["sys.exit", "a message"], 1)):  # as the interpreter says
            assert exit_code(server, server.start(argv, env, tmp_path / "exits.log") or -1) == code
        waiting = server.start(["wait"], env, tmp_path / "waiting.log")
        assert waiting is not None
        os.kill(waiting, signal.SIGTERM)
        assert exit_code(server, waiting) == -signal.SIGTERM
        # A request the server cannot serve (its log's directory is missing) is refused, its
        # environment's file removed, and the next one served.
        assert server.start(["exit", "0"], env, tmp_path / "missing" / "child.log") is None
        assert not list(tmp_path.glob(".child-*"))
        assert exit_code(server, server.start(["exit", "0"], env, tmp_path / "next.log") or -1) == 0
    finally:
        server.stop()


def test_the_server_goes_once_its_client_has_and_its_children_have_ended(tmp_path):
    server = start_server(tmp_path)
    waiting = server.start(["wait"], {"MLAAS_CHILD": "1"}, tmp_path / "waiting.log")
    assert waiting is not None
    server_process = psutil.Process(server.pid)
    server.stop()
    time.sleep(0.5)  # a moment for a server that would go at once (the wrong behaviour) to go
    assert server.alive and psutil.Process(waiting).ppid() == server.pid  # the child stays in its tree
    os.kill(waiting, signal.SIGTERM)
    server_process.wait(30)
    assert not server.alive


def test_a_child_whose_pid_never_reached_the_client_does_not_run(tmp_path):
    """A child the client never learnt of would run untracked (a replica on ports the scheduler
    gives another): the server's answer fails here, as if it had been killed after the fork."""
    server = subprocess.Popen(
        [sys.executable, "-m", "tests.mlaas.fork_child"], env=tool_env(), stdin=subprocess.PIPE,
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    assert server.stdout is not None and server.stdin is not None
    assert json.loads(server.stdout.readline()) == {"ready": True}
    server.stdout.close()  # nobody reads the answer
    env_file = tmp_path / ".child-lost.env"
    env_file.write_text(json.dumps({"MLAAS_CHILD": "1"}))
    request = {"argv": ["wait", str(tmp_path)], "env_file": str(env_file), "log": str(tmp_path / "lost.log")}
    server.stdin.write(json.dumps(request).encode() + b"\n")
    server.stdin.flush()
    server.wait(30)  # its answer found no reader
    assert "forked by" not in (tmp_path / "lost.log").read_text()
    assert env_file.exists()  # never read: the child went before it began
    assert not [
        p for p in psutil.process_iter(["cmdline"]) if str(tmp_path / "lost.log") in " ".join(p.info["cmdline"] or ())
    ]
