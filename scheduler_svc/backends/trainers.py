"""The local backend's warm trainers: one long-lived `python -m mlaas.retraining.warm_trainer` per
node, started when the first replica lands there, which forks each training job from a process
that has its libraries imported and warmed (mlaas/retraining/warm_trainer.py says how a job is
kept as separate as a cold one). A node whose trainer is not ready yet, or died, gets a cold job
and a new trainer.

The trainer is the scheduler's child, talks over its standard input and output, holds no
credential (each job's comes with its request) and exits when the scheduler does.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import select
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

log = logging.getLogger(__name__)
ANSWER_SECONDS = 10.0  # a fork is milliseconds; a trainer this slow is treated as gone


class WarmTrainer:
    def __init__(self, python: str, env: Mapping[str, str], log_path: Path):
        with open(log_path, "ab") as trainer_log:
            self._process = subprocess.Popen(
                [python, "-m", "mlaas.retraining.warm_trainer"], env=dict(env), stdin=subprocess.PIPE,
                stdout=subprocess.PIPE, stderr=trainer_log, start_new_session=True,
            )  # fmt: skip
        assert self._process.stdin is not None and self._process.stdout is not None, "both asked for (PIPE)"
        self._requests, self._answers = self._process.stdin, self._process.stdout
        self._buffer = b""
        self._ready = False
        self._lock = threading.Lock()  # one request at a time on the pipe

    @property
    def alive(self) -> bool:
        return self._process.poll() is None

    @property
    def pid(self) -> int:
        return self._process.pid

    def ready(self) -> bool:
        """Alive, and done warming up: its next job is forked."""
        with self._lock:
            return self.alive and (self._ready or self._is_ready())

    def start_job(self, argv: Sequence[str], env: Mapping[str, str], log_path: Path, threads: int) -> int | None:
        """The pid of the job the trainer forked; None if it is not ready (still warming up) or
        not answering, for a cold job instead."""
        if not self.ready():
            return None
        with self._lock:
            request = {"argv": list(argv), "env": dict(env), "log": str(log_path), "threads": threads}
            try:
                self._requests.write(json.dumps(request).encode() + b"\n")
                self._requests.flush()
                answer = self._read_answer(ANSWER_SECONDS)
            except (OSError, ValueError) as err:
                log.warning("warm trainer %d did not answer (%s); stopping it", self._process.pid, err)
                self.stop()
                return None
        if "pid" not in answer:
            log.warning("warm trainer %d refused a job: %s", self._process.pid, answer.get("error"))
            return None
        return int(answer["pid"])

    def _is_ready(self) -> bool:
        """Whether the trainer said it is ready (read without waiting)."""
        try:
            self._ready = bool(self._read_answer(0.0).get("ready"))
        except TimeoutError:
            return False
        return self._ready

    def _read_answer(self, timeout: float) -> dict:
        """The trainer's next line, as JSON; TimeoutError if none within `timeout`."""
        fd = self._answers.fileno()
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buffer:
            readable, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
            if not readable:
                raise TimeoutError(f"no answer within {timeout:g}s")
            chunk = os.read(fd, 4096)
            if not chunk:
                raise OSError("the trainer closed its output")
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return json.loads(line)

    def stop(self) -> None:
        """Closes its input (it exits); the jobs it started run on, each in its own session."""
        with contextlib.suppress(OSError):
            if self._process.stdin is not None:
                self._process.stdin.close()
        try:
            self._process.wait(5)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()


class WarmTrainers:
    """One warm trainer per node of the local backend."""

    def __init__(self, python: str, env: Mapping[str, str], log_dir: Path):
        self._python = python
        self._env = dict(env)
        self._log_dir = log_dir
        self._trainers: dict[str, WarmTrainer] = {}
        self._lock = threading.Lock()

    def ensure(self, node: str) -> WarmTrainer:
        """The node's trainer, started if it has none or its trainer died."""
        with self._lock:
            trainer = self._trainers.get(node)
            if trainer is None or not trainer.alive:
                trainer = self._trainers[node] = WarmTrainer(self._python, self._env, self._log_path(node))
            return trainer

    def _log_path(self, node: str) -> Path:
        return self._log_dir / f"trainer-{node}.log"

    def start_job(
        self, node: str, argv: Sequence[str], env: Mapping[str, str], log_path: Path, threads: int
    ) -> int | None:
        """The pid of a job forked by the node's warm trainer; None for a cold one (the node's
        trainer is then started, or started again, for the next job)."""
        return self.ensure(node).start_job(argv, env, log_path, threads)

    def close(self) -> None:
        with self._lock:
            trainers, self._trainers = list(self._trainers.values()), {}
        for trainer in trainers:
            trainer.stop()
