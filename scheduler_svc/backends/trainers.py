"""The local backend's warm trainers: one long-lived `python -m mlaas.retraining.warm_trainer` per
node, started when the first replica lands there, which forks each training job from a process
that has its libraries imported and warmed (mlaas/services/fork_server.py says how a job is kept
as separate as a cold one). A node whose trainer is not ready yet, or died, gets a cold job and a
new trainer."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from pathlib import Path

from scheduler_svc.backends.fork_client import ForkServer

MODULE = "mlaas.retraining.warm_trainer"


class WarmTrainers:
    """One warm trainer per node of the local backend."""

    def __init__(self, python: str, env: Mapping[str, str], log_dir: Path):
        self._python = python
        self._env = dict(env)
        self._log_dir = log_dir
        self._trainers: dict[str, ForkServer] = {}
        self._lock = threading.Lock()

    def ensure(self, node: str) -> ForkServer:
        """The node's trainer, started if it has none or its trainer died."""
        with self._lock:
            trainer = self._trainers.get(node)
            if trainer is None or not trainer.alive:
                if trainer is not None:
                    trainer.close()
                trainer = self._trainers[node] = ForkServer(self._python, MODULE, self._env, self._log_path(node))
            return trainer

    def _log_path(self, node: str) -> Path:
        return self._log_dir / f"trainer-{node}.log"

    def close(self) -> None:
        with self._lock:
            trainers, self._trainers = list(self._trainers.values()), {}
        for trainer in trainers:
            trainer.stop()
