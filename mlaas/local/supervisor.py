"""Runs the mesh's services as child processes, restarts one that crashes, and stops them
together. A child that keeps crashing is marked failed and tried again on a slower schedule
while the others keep serving: one component never takes the mesh down with it.

Children get their own session, so a terminal's Ctrl-C reaches only the supervisor, which then
stops every child in reverse start order with SIGTERM (graceful), SIGKILL after a grace period.
They also die with the supervisor however it ends (SIGKILL included, start-up included): each
asks the kernel for SIGTERM when it goes (mlaas/services/lifetime.py), so that none is left
holding the mesh's ports.
"""

from __future__ import annotations

import logging
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from mlaas.services.lifetime import starter_env

log = logging.getLogger(__name__)


@dataclass
class Child:
    name: str
    command: list[str]
    env: dict[str, str]
    log_path: Path
    process: subprocess.Popen
    crashes: list[float] = field(default_factory=list)  # monotonic times
    restart_at: float | None = None  # monotonic; set while it waits to be started again


@dataclass(frozen=True)
class RestartPolicy:
    """A crashed child is started again after `backoff_seconds`, doubling up to `max_backoff_seconds`;
    after `max_crashes` within `window_seconds` it is marked failed and tried every
    `failed_retry_seconds` until it stays up."""

    backoff_seconds: float = 1.0
    max_backoff_seconds: float = 30.0
    max_crashes: int = 5
    window_seconds: float = 300.0
    failed_retry_seconds: float = 60.0


class Supervisor:
    def __init__(self, log_dir: Path, policy: RestartPolicy = RestartPolicy()):
        self.log_dir = log_dir
        self.policy = policy
        self.children: list[Child] = []
        self.stopping = threading.Event()

    def spawn(self, name: str, command: Sequence[str], env: Mapping[str, str]) -> Child:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        child = Child(name, list(command), dict(env), self.log_dir / f"{name}.log", self._start(name, command, env))
        self.children.append(child)
        return child

    def _start(self, name: str, command: Sequence[str], env: Mapping[str, str]) -> subprocess.Popen:
        with open(self.log_dir / f"{name}.log", "ab") as out:
            return subprocess.Popen(
                list(command), env={**env, **starter_env()}, stdin=subprocess.DEVNULL, stdout=out,
                stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip

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

    def supervise(self, say: Callable[[str], None], revive: Sequence[Callable[[], str | None]] = ()) -> None:
        """Until SIGINT/SIGTERM, restarting children that exit, each on its own schedule. Each of
        `revive` is asked every half second to bring back what it looks after, and says what it did."""
        received = threading.Event()

        def on_signal(_signum, _frame):
            received.set()

        signal.signal(signal.SIGINT, on_signal)
        signal.signal(signal.SIGTERM, on_signal)
        while not received.wait(0.5):
            for event in filter(None, (bring_back() for bring_back in revive)):
                say(event)
            for child in self.children:
                self._look_after(child, time.monotonic(), say)

    def _look_after(self, child: Child, now: float, say: Callable[[str], None]) -> None:
        if child.restart_at is not None:
            if now >= child.restart_at:
                child.process, child.restart_at = self._start(child.name, child.command, child.env), None
            return
        if child.process.poll() is None:
            return
        policy = self.policy
        child.crashes = [t for t in child.crashes if now - t < policy.window_seconds] + [now]
        crashes = f"{len(child.crashes)} crash(es) in {policy.window_seconds:.0f}s; see {child.log_path}"
        if len(child.crashes) >= policy.max_crashes:
            delay = policy.failed_retry_seconds
            say(f"{child.name} exited with {child.process.returncode} ({crashes}): marked failed, the rest keep "
                f"serving; trying it again in {delay:.0f}s")  # fmt: skip
        else:
            delay = min(policy.backoff_seconds * 2 ** (len(child.crashes) - 1), policy.max_backoff_seconds)
            say(f"{child.name} exited with {child.process.returncode}; restarting it in {delay:.0f}s ({crashes})")
        child.restart_at = now + delay


def child_env(base: Mapping[str, str], **overrides: str) -> dict[str, str]:
    env = dict(base)
    env.update(overrides)
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env
