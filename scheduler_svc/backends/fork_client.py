"""The local backend's side of a fork server (mlaas/services/fork_server.py): a warm trainer or
the warm runtime, started as the scheduler's child and talked to over its standard input and
output. It holds no credential: each child's environment goes to it in a private file that only
the child reads (and deletes). It says when a child ends, with its exit code, as a Popen would.
It exits when the scheduler does, once its children have."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import select
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

log = logging.getLogger(__name__)
ANSWER_SECONDS = 10.0  # a fork is milliseconds; a server this slow is treated as gone
WARM_UP_SECONDS = 60.0  # a server not ready by then is killed (and replaced), not waited for again
EXIT_NOTICE_SECONDS = 0.5  # between a child's end and the server's word of it
KEPT_EXITS = 4096  # exit codes kept for children nobody has asked about yet


class ForkServer:
    def __init__(self, python: str, module: str, env: Mapping[str, str], log_path: Path):
        self._module = module
        self._env_dir = log_path.parent  # the scheduler's, private
        with open(log_path, "ab") as server_log:
            self._process = subprocess.Popen(
                [python, "-m", module], env=dict(env), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                stderr=server_log, start_new_session=True,
            )  # fmt: skip
        assert self._process.stdin is not None and self._process.stdout is not None, "both asked for (PIPE)"
        self._requests, self._answers = self._process.stdin, self._process.stdout
        self._started = time.monotonic()
        self._buffer = b""
        self._exits: dict[int, int] = {}  # pid -> exit code, of the children that ended
        self._ready = False
        self._lock = threading.Lock()  # one request at a time on the pipe

    @property
    def alive(self) -> bool:
        return self._process.poll() is None

    @property
    def pid(self) -> int:
        return self._process.pid

    def ready(self, wait_seconds: float = 0.0) -> bool:
        """Alive, and done warming up (waiting up to `wait_seconds` for it): its next child is
        forked. One still not ready WARM_UP_SECONDS after it started is killed."""
        with self._lock:
            if not self.alive or self._ready:
                return self._ready and self.alive
            left = self._started + WARM_UP_SECONDS - time.monotonic()
            if self._is_ready(max(0.0, min(wait_seconds, left))):
                return True
            if time.monotonic() > self._started + WARM_UP_SECONDS:
                log.warning("%s %d not warm after %.0fs; killing it", self._module, self._process.pid, WARM_UP_SECONDS)
                self._process.kill()
            return False

    def start(
        self, argv: Sequence[str], env: Mapping[str, str], log_path: Path, wait_seconds: float = 0.0
    ) -> int | None:
        """The pid of the child the server forked; None if it is not ready within `wait_seconds`
        (still warming up) or not answering, for a cold start instead."""
        if not self.ready(wait_seconds):
            return None
        env_file = _private_file(self._env_dir, env)
        with self._lock:
            request = {"argv": list(argv), "env_file": env_file, "log": str(log_path)}
            try:
                self._requests.write(json.dumps(request).encode() + b"\n")
                self._requests.flush()
                answer = self._read_answer(ANSWER_SECONDS)
            except (OSError, ValueError, TimeoutError) as err:
                log.warning("%s %d did not answer (%s); killing it", self._module, self._process.pid, err)
                answer = {"error": str(err)}
                self._stop()
                self._process.kill()
        if "pid" not in answer:
            Path(env_file).unlink(missing_ok=True)  # no child will read it
            log.warning("%s %d started no child: %s", self._module, self._process.pid, answer.get("error"))
            return None
        return int(answer["pid"])

    def exit_code(self, pid: int) -> int | None:
        """The exit code of the child `pid` once it has ended (None until the server says so,
        which it does within a moment of the end)."""
        deadline = time.monotonic() + EXIT_NOTICE_SECONDS
        with self._lock:
            while pid not in self._exits:
                try:
                    self._keep_exit(self._read_line(max(0.0, deadline - time.monotonic())))
                except (TimeoutError, OSError, ValueError):
                    break
            return self._exits.get(pid)

    def _is_ready(self, wait_seconds: float) -> bool:
        """Whether the server said it is ready (within `wait_seconds`)."""
        try:
            self._ready = bool(self._read_answer(wait_seconds).get("ready"))
        except (TimeoutError, OSError, ValueError):
            return False
        return self._ready

    def _read_answer(self, timeout: float) -> dict:
        """The server's next message that is not a child's end (those are kept for exit_code);
        TimeoutError if none within `timeout`."""
        deadline = time.monotonic() + timeout
        while self._keep_exit(message := self._read_line(max(0.0, deadline - time.monotonic()))):
            continue
        return message

    def _keep_exit(self, message: dict) -> bool:
        """Keeps the exit code `message` gives, if it says a child ended (and says whether)."""
        if "exited" not in message:
            return False
        if len(self._exits) >= KEPT_EXITS:
            del self._exits[next(iter(self._exits))]
        self._exits[int(message["exited"])] = int(message["code"])
        return True

    def _read_line(self, timeout: float) -> dict:
        """The server's next line, as JSON; TimeoutError if none within `timeout`."""
        fd = self._answers.fileno()
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buffer:
            readable, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
            if not readable:
                raise TimeoutError(f"no answer within {timeout:g}s")
            chunk = os.read(fd, 4096)
            if not chunk:
                raise OSError("the server closed its output")
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return json.loads(line)

    def stop(self) -> None:
        """Closes its input: it starts no more children and exits once those it started have
        (each runs in its own session, and stays)."""
        with self._lock:
            self._stop()

    def close(self) -> None:
        """stop(), and its output closed too: for a server that died, whose pipes would stay open."""
        with self._lock:
            self._stop()
            with contextlib.suppress(OSError):
                self._answers.close()

    def _stop(self) -> None:
        with contextlib.suppress(OSError):
            self._requests.close()


class ForkServers:
    """Fork servers of one module by key (a node's warm trainer; the warm runtime), each started
    on first use and started again when it died."""

    def __init__(self, python: str, module: str, env: Mapping[str, str], log_path: Callable[[str], Path]):
        self._python, self._module, self._env, self._log_path = python, module, dict(env), log_path
        self._servers: dict[str, ForkServer] = {}
        self._lock = threading.Lock()

    def ensure(self, key: str) -> ForkServer:
        with self._lock:
            server = self._servers.get(key)
            if server is None or not server.alive:
                if server is not None:
                    server.close()
                server = self._servers[key] = ForkServer(self._python, self._module, self._env, self._log_path(key))
            return server

    def pids(self) -> list[int]:
        with self._lock:
            return [server.pid for server in self._servers.values()]

    def close(self) -> None:
        """Each server goes once its children have (ForkServer.stop)."""
        with self._lock:
            servers, self._servers = list(self._servers.values()), {}
        for server in servers:
            server.stop()


def _private_file(directory: Path, env: Mapping[str, str]) -> str:
    """A new file only this user can read, holding `env` as JSON; its path."""
    fd, path = tempfile.mkstemp(dir=directory, prefix=".child-", suffix=".env")  # mode 0600
    with os.fdopen(fd, "w") as env_file:
        json.dump(dict(env), env_file)
    return path
