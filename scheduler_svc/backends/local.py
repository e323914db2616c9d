"""Replicas as processes of `python -m inference_svc` on free loopback ports, and training jobs as
processes of `python -m mlaas.retraining.train_job`: each forked by a fork server that has their
libraries imported (mlaas/services/fork_server.py): replicas by the backend's warm runtime
(inference_svc/warm.py, started with the first replica), jobs by their node's warm trainer
(mlaas/retraining/warm_trainer.py, started when a node gets its first replica); started cold while
none is ready, and a server that died is started again.

Each replica runs in its own session (it outlives a scheduler restart; the handle is its pid)
with one worker per whole CPU it was given, and logs to the scheduler's data dir.

A child process has no container limits. A job gets as many numeric-library threads as CPUs,
and its memory is watched as a kubelet watches a container's: each time its status is asked
(three times a second by the job watcher), a job whose resident memory (with its children's) is
above its train resources' memory is killed, with the reason in its log. That is a limit checked
often, not a hard one (use the Docker or Kubernetes backend for that); a job started by an
earlier scheduler process is not watched.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import psutil

from mlaas.quantities import format_memory
from mlaas.services.net import free_port
from mlaas.services.settings import data_dir
from scheduler_svc.backends import JobSpec, ReplicaSpec, ReplicaStatus, credential
from scheduler_svc.backends.fork_client import ForkServer, ForkServers
from scheduler_svc.backends.launch import job_args, runtime_args, runtime_env

if TYPE_CHECKING:
    from scheduler_svc.settings import SchedulerSettings


def _alive(pid: int) -> bool:
    """The process runs (a zombie does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie child has exited
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True


def _ours(pid: int) -> bool:
    """The process is a runtime, a job or a warm trainer: after a restart of the machine or of the
    mesh, the pid an earlier scheduler recorded may be another program's now."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
            command = cmdline.read()
    except OSError:
        return False
    return b"inference_svc" in command or b"mlaas.retraining." in command


def _resident_bytes(pid: int) -> int:
    """Resident memory of the process and its descendants (0 once it is gone)."""
    try:
        process = psutil.Process(pid)
        return sum(p.memory_info().rss for p in [process, *process.children(recursive=True)])
    except psutil.Error:
        return 0


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


def _remove_stale_env_files(directory: Path, older_than: float = 600.0) -> None:
    """Children's environment files (credentials) a scheduler killed mid-start left unread: none
    so old can be one a start still waits for (another scheduler may share the directory)."""
    for stale in directory.glob(".child-*.env"):
        with contextlib.suppress(OSError):
            if time.time() - stale.stat().st_mtime > older_than:
                stale.unlink()


RUNTIME_SERVER = "inference_svc.warm"
TRAINER_SERVER = "mlaas.retraining.warm_trainer"
# How long a replica or a job waits for a warm runtime or trainer that is still warming up: less
# than a cold start, which would do the same imports from the beginning beside it.
WARM_WAIT_SECONDS = 5.0

# What a replica or job must not inherit from the scheduler's environment: its role's token, the
# key that mints credentials, and Redis (whose password lets one rewrite every deployment).
SCHEDULERS_OWN = ("MLAAS_TOKEN", "MLAAS_MESH_KEY_FILE", "MLAAS_REDIS_URL")


class LocalBackend:
    name = "local"

    def __init__(
        self, registry_address: str, log_dir: Path, env: Mapping[str, str], python: str = sys.executable,
        warm_trainers: bool = True, warm_runtimes: bool = True,
    ):  # fmt: skip
        self._registry = registry_address
        self._log_dir = log_dir
        # The scheduler's own credentials stay with it; each child gets the one minted for it.
        self._env = {k: v for k, v in env.items() if k not in SCHEDULERS_OWN}
        # ONNX Runtime's telemetry store, opened at import, is a file a forked child would close
        # under it (and a STRICT node's runtime has no business sending telemetry anywhere).
        self._env.setdefault("ORT_DISABLE_TELEMETRY", "1")
        self._python = python
        self._trainers = (
            ForkServers(python, TRAINER_SERVER, self._env, lambda node: log_dir / f"trainer-{node}.log")
            if warm_trainers else None
        )  # fmt: skip
        self._runtimes = (
            ForkServers(python, RUNTIME_SERVER, self._env, lambda _: log_dir / "warm-runtime.log")
            if warm_runtimes else None
        )  # fmt: skip
        self._children: dict[int, subprocess.Popen] = {}
        self._forked: dict[int, ForkServer] = {}  # pid -> the server that forked it (and knows its exit code)
        self._memory_limits: dict[int, int] = {}  # pid -> bytes, for the jobs it started
        log_dir.mkdir(parents=True, exist_ok=True)
        _remove_stale_env_files(log_dir)

    @classmethod
    def for_settings(cls, settings: SchedulerSettings, env: Mapping[str, str]) -> LocalBackend:
        """The scheduler's local backend: runtimes fetch from its registry, log under its data dir."""
        return cls(
            settings.registry_address, settings.data_dir / "replicas", env, warm_trainers=settings.warm_trainers,
            warm_runtimes=settings.warm_runtimes,
        )  # fmt: skip

    @property
    def trainers(self) -> ForkServers | None:
        """A warm trainer per node."""
        return self._trainers

    @property
    def runtimes(self) -> ForkServers | None:
        """The warm runtime (one, whatever the node)."""
        return self._runtimes

    def _log_path(self, replica_id: str) -> Path:
        return self._log_dir / f"{replica_id}.log"

    def create(self, spec: ReplicaSpec) -> ReplicaStatus:
        port, http_port, bulk_port = (p or free_port() for p in (spec.port, spec.http_port, spec.bulk_port))
        arguments = ["--registry", self._registry, *runtime_args(spec, port, http_port, bulk_port)]
        env = {**self._env, **runtime_env(spec)}
        pid = self._forked_runtime(spec.replica_id, arguments, env)
        if pid is None:
            pid = self._spawn(spec.replica_id, [self._python, "-m", "inference_svc", *arguments], env)
        if self._trainers is not None:  # warm before this replica's first retraining is due
            self._trainers.ensure(spec.node)
        return ReplicaStatus(
            spec.replica_id, f"127.0.0.1:{port}", True, handle=str(pid),
            http_endpoint=f"127.0.0.1:{http_port}", bulk_endpoint=f"127.0.0.1:{bulk_port}",
        )  # fmt: skip

    def _forked_runtime(self, replica_id: str, arguments: list[str], env: Mapping[str, str]) -> int | None:
        """The pid of the replica the warm runtime forked; None for a cold start."""
        if self._runtimes is None:
            return None
        server = self._runtimes.ensure("")
        return self._fork(server, arguments, env, self._log_path(replica_id), WARM_WAIT_SECONDS)

    def _fork(
        self, server: ForkServer, arguments: list[str], env: Mapping[str, str], log_path: Path, wait: float = 0.0
    ) -> int | None:  # fmt: skip
        pid = server.start(arguments, env, log_path, wait)
        if pid is not None:
            self._forked[pid] = server
        return pid

    def start_job(self, spec: JobSpec) -> ReplicaStatus:
        arguments = job_args(spec, self._registry)
        threads = max(1, spec.cpu_millicores // 1000)
        limits = {name: str(threads) for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}
        env = {**self._env, **limits, **credential(spec.token)}
        pid = None
        if self._trainers is not None:
            trainer = self._trainers.ensure(spec.node)
            pid = self._fork(trainer, arguments, env, self._log_path(spec.job_id), WARM_WAIT_SECONDS)
        if pid is None:
            pid = self._spawn(spec.job_id, [self._python, "-m", "mlaas.retraining.train_job", *arguments], env)
        if spec.memory_bytes:
            self._memory_limits[pid] = spec.memory_bytes
        return ReplicaStatus(spec.job_id, "", True, handle=str(pid))

    def _spawn(self, name: str, command: list[str], env: Mapping[str, str]) -> int:
        with open(self._log_path(name), "ab") as log:
            process = subprocess.Popen(
                command, env=dict(env), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        self._children[process.pid] = process
        return process.pid

    def status(self, replica: ReplicaStatus) -> ReplicaStatus:
        pid = int(replica.handle)
        child = self._children.get(pid)
        if child is not None:
            code = child.poll()
            running = code is None
        else:  # forked, or started by an earlier scheduler process
            running, code = _alive(pid) and _ours(pid), None
            if running and replica.memory_bytes:  # its limit holds across the restart
                self._memory_limits.setdefault(pid, replica.memory_bytes)
            if not running and pid in self._forked:
                code = self._forked[pid].exit_code(pid)
        if running and pid in self._memory_limits:
            running, code = self._within_memory(replica, pid)
        return ReplicaStatus(replica.replica_id, replica.endpoint, running, code, replica.handle)

    def _within_memory(self, replica: ReplicaStatus, pid: int) -> tuple[bool, int | None]:
        """(still running, exit code): a job above its memory is killed, and says why in its log."""
        used, limit = _resident_bytes(pid), self._memory_limits[pid]
        if used <= limit:
            return True, None
        with open(self._log_path(replica.replica_id), "a") as log:
            log.write(
                f"stopped: {format_memory(used)} resident, more than the job's {format_memory(limit)} "
                "(its model's train_resources.memory)\n"
            )
        _kill_group(pid)
        self._reap(pid)
        return False, -signal.SIGKILL

    def logs(self, replica: ReplicaStatus, lines: int = 100) -> str:
        path = self._log_path(replica.replica_id)
        if not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def node_store(self, deployment_id: str) -> str:
        """The runtimes' node store, in their data directory (every node is this machine)."""
        return str(data_dir(self._env) / "node" / f"{deployment_id}.sqlite3")

    def forget(self, deployment_id: str) -> None:
        """The deployment's node store, in the runtimes' data directory (and its WAL files)."""
        for path in Path(self.node_store(deployment_id)).parent.glob(f"{deployment_id}.sqlite3*"):
            path.unlink(missing_ok=True)

    def delete(self, replica: ReplicaStatus, grace_seconds: float = 10.0) -> None:
        """SIGTERM (the runtime drains), SIGKILL after the grace period; then whatever is left
        of its session (the replica is its process group leader)."""
        pid = int(replica.handle)
        self._memory_limits.pop(pid, None)  # it goes now, whatever it uses
        if not self.status(replica).running:
            self._reap(pid)
            if pid in self._children or not _alive(pid):  # never another program that took the pid
                _kill_group(pid)  # what is left of its session
            return
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace_seconds
        while time.monotonic() < deadline:
            if not self.status(replica).running:
                self._reap(pid)
                return
            time.sleep(0.05)
        os.kill(pid, signal.SIGKILL)
        self._reap(pid)
        _kill_group(pid)

    def close(self) -> None:
        """The warm runtime and trainers go; replicas and jobs are processes of their own, and stay."""
        for servers in (self._trainers, self._runtimes):
            if servers is not None:
                servers.close()

    def _reap(self, pid: int) -> None:
        child = self._children.get(pid)  # kept, so that status() still knows the exit code
        if child is not None:
            child.wait()
