"""Runs the mesh's services as child processes and stops them together.

Children get their own session, so a terminal's Ctrl-C reaches only the supervisor, which then
stops every child in reverse start order with SIGTERM (graceful), SIGKILL after a grace period.
"""

from __future__ import annotations

import logging
import signal
import subprocess
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)


@dataclass
class Child:
    name: str
    process: subprocess.Popen
    log_path: Path


class Supervisor:
    def __init__(self, log_dir: Path):
        self.log_dir = log_dir
        self.children: list[Child] = []
        self.stopping = threading.Event()

    def spawn(self, name: str, command: Sequence[str], env: Mapping[str, str]) -> Child:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.log_dir / f"{name}.log"
        with open(log_path, "ab") as out:
            process = subprocess.Popen(
                list(command),
                env=dict(env),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        child = Child(name, process, log_path)
        self.children.append(child)
        return child

    def first_exited(self) -> Child | None:
        return next((c for c in self.children if c.process.poll() is not None), None)

    def stop_all(self, grace: float = 15.0) -> None:
        self.stopping.set()
        for child in reversed(self.children):
            if child.process.poll() is None:
                child.process.send_signal(signal.SIGTERM)
        for child in reversed(self.children):
            try:
                child.process.wait(grace)
            except subprocess.TimeoutExpired:
                log.warning("%s did not stop within %.0fs; killing it", child.name, grace)
                child.process.kill()
                child.process.wait()

    def wait_for_signal(self) -> Child | None:
        """Blocks until SIGINT/SIGTERM (returns None) or until a child dies (returns it)."""
        received = threading.Event()

        def on_signal(_signum, _frame):
            received.set()

        signal.signal(signal.SIGINT, on_signal)
        signal.signal(signal.SIGTERM, on_signal)
        while not received.wait(0.5):
            dead = self.first_exited()
            if dead is not None:
                return dead
        return None


def child_env(base: Mapping[str, str], **overrides: str) -> dict[str, str]:
    env = dict(base)
    env.update(overrides)
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env
