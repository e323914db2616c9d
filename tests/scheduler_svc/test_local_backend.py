"""The local backend starts real runtime processes that serve a registered model."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import psutil
import pytest

from mlaas.client import RegistryClient
from mlaas.export import register_sklearn
from mlaas.inference_client import InferenceClient
from mlaas.services.net import wait_healthy
from scheduler_svc.backends import ReplicaSpec, ReplicaStatus
from scheduler_svc.backends.local import LocalBackend
from tests.conftest import tool_env

pytestmark = pytest.mark.spawns  # see pyproject.toml


@pytest.mark.parametrize("warm", [True, False], ids=["forked by the warm runtime", "started cold"])
def test_create_serve_status_logs_delete(tmp_path, registry, iris_model, warm):
    model, X, _ = iris_model
    address = f"127.0.0.1:{registry.port}"
    with RegistryClient(address) as client:
        version = register_sklearn(client, model, "iris-local", X).model.version
    env = tool_env(MLAAS_DATA_DIR=str(tmp_path / "data"))
    backend = LocalBackend(address, tmp_path / "logs", env, warm_trainers=False, warm_runtimes=warm)
    spec = ReplicaSpec("r-1", "d-1", "local-a", f"iris-local:{version}", cpu_millicores=1000, memory_bytes=2**28)
    try:
        replica = backend.create(spec)
        try:
            wait_healthy(replica.endpoint, timeout=60)
            with InferenceClient(replica.endpoint) as runtime:
                assert np.array_equal(runtime.infer("iris-local", {"X": X[:3]})["label"], model.predict(X[:3]))
            assert backend.status(replica).running
            assert "serving ['iris-local']" in backend.logs(replica)
            assert ("forked by warm runtime" in backend.logs(replica)) == warm
            for pid in (int(replica.handle), *(backend.runtimes.pids() if backend.runtimes else [])):
                # ONNX Runtime's telemetry store: a forked child would close its files under it
                assert not [f for f in Path(f"/proc/{pid}/fd").iterdir() if "onnxruntime" in str(f.readlink())]
            processes = [psutil.Process(int(replica.handle)), *psutil.Process(int(replica.handle)).children()]
        finally:
            backend.delete(replica, grace_seconds=10)
        stopped = backend.status(replica)
        assert not stopped.running and stopped.exit_code == 0
        _, left = psutil.wait_procs(processes, timeout=30)  # its workers too
        assert not [p for p in left if p.status() != psutil.STATUS_ZOMBIE]
        assert not list((tmp_path / "logs").glob(".child-*.env"))  # the credential's file, read and gone
    finally:
        backend.close()


def test_credential_files_a_killed_scheduler_left_unread_are_removed_once_old(tmp_path):
    logs = tmp_path / "logs"
    logs.mkdir()
    old, fresh = logs / ".child-old.env", logs / ".child-fresh.env"
    for path in (old, fresh):
        path.write_text('{"MLAAS_TOKEN": "mlaas-scoped.x"}')
    os.utime(old, (time.time() - 3600, time.time() - 3600))
    LocalBackend("127.0.0.1:1", logs, tool_env(MLAAS_DATA_DIR=str(tmp_path / "data")), warm_trainers=False).close()
    assert not old.exists() and fresh.exists()  # a fresh one may be a start another scheduler waits for


def test_a_destroyed_deployments_node_store_is_removed_and_no_other(tmp_path):
    """A STRICT deployment's predictions (raw inputs) and labels stayed on the node after it
    was destroyed."""
    backend = LocalBackend("127.0.0.1:1", tmp_path / "logs", tool_env(MLAAS_DATA_DIR=str(tmp_path / "data")))
    node = tmp_path / "data" / "node"
    node.mkdir(parents=True)
    for name in ("d-1.sqlite3", "d-1.sqlite3-wal", "d-1.sqlite3-shm", "d-10.sqlite3", "d-2.sqlite3"):
        (node / name).write_text("rows")
    backend.forget("d-1")
    assert sorted(p.name for p in node.iterdir()) == ["d-10.sqlite3", "d-2.sqlite3"]


def test_a_pid_recorded_before_a_restart_that_another_program_took_is_neither_running_nor_killed(tmp_path):
    """After the machine or the mesh restarted, a replica's recorded pid may be any program's:
    it is not taken for the replica, and deleting the replica leaves it alone."""
    other = subprocess.Popen(["sleep", "60"], start_new_session=True)  # a group leader, as a replica is
    try:
        backend = LocalBackend("127.0.0.1:1", tmp_path / "logs", tool_env(MLAAS_DATA_DIR=str(tmp_path / "data")))
        recorded = ReplicaStatus("r-1", "127.0.0.1:1", True, handle=str(other.pid))
        assert not backend.status(recorded).running
        backend.delete(recorded, grace_seconds=0.1)
        assert other.poll() is None
    finally:
        other.kill()
        other.wait()


def test_a_job_an_earlier_scheduler_started_is_held_to_its_memory_too(tmp_path):
    """A scheduler restarted while a job ran adopted it without its memory limit, which was kept
    in the earlier process only: an input that inflates when loaded grew to 3 GiB against 384 MiB.
    The job's record gives the limit, and the new scheduler enforces it."""
    grows = "import time; held = bytearray(256 << 20); time.sleep(60)"
    job = subprocess.Popen([sys.executable, "-c", grows, "mlaas.retraining.train_job"], start_new_session=True)
    try:
        # Adopted jobs have long run: until it has exec'd, the child is a copy of this test's
        # process, not the mesh's (on a busy machine the first look came that early).
        deadline = time.monotonic() + 30
        while "mlaas.retraining.train_job" not in psutil.Process(job.pid).cmdline():
            assert time.monotonic() < deadline
            time.sleep(0.01)
        backend = LocalBackend("127.0.0.1:1", tmp_path / "logs", tool_env(MLAAS_DATA_DIR=str(tmp_path / "data")))
        adopted = ReplicaStatus("j-1", "", True, handle=str(job.pid), memory_bytes=64 << 20)
        deadline = time.monotonic() + 30
        while (status := backend.status(adopted)).running:
            assert time.monotonic() < deadline, "a job over its memory ran on"
            time.sleep(0.1)
        assert status.exit_code == -9 and job.wait(10) == -9
        assert "more than the job's 64Mi" in backend.logs(adopted)
    finally:
        job.kill()
        job.wait()
