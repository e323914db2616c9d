"""Settings every server shares, read once from MLAAS_* environment variables.

Each service builds its own settings object from these at start-up and passes it down; nothing
reads the environment after that.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path

from mlaas.env import env_bool
from mlaas.tls import ServerTLS

LOOPBACK = "127.0.0.1"


def env_int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not an integer") from None


def env_float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return float(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not a number") from None


def setting(env_name: str, default, *, choices: tuple[str, ...] = (), parse=None):
    """A settings field read from `env_name` by read_env: its default is declared here and
    nowhere else. The value is parsed as its default's type (int, float, bool, str, Path), or by
    `parse`; `choices` refuses anything else by name (a misspelt backend must not silently fall
    back to the default)."""
    return field(default=default, metadata={"env": env_name, "choices": choices, "parse": parse})


def path_setting(raw: str) -> Path:
    """The parser of a Path setting whose default is None."""
    return Path(raw).expanduser()


def paths_setting(raw: str) -> tuple[Path, ...]:
    """A colon-separated list of paths."""
    return tuple(Path(p) for p in raw.split(":") if p)


def names_setting(raw: str) -> tuple[str, ...]:
    """A comma-separated list of names."""
    return tuple(n.strip() for n in raw.split(",") if n.strip())


def read_env(cls, env: Mapping[str, str], **given):
    """`cls` built from the environment: every field declared with setting() that `env` sets,
    and `given` for the rest (fields built another way: nested settings, parsed lists)."""
    values = dict(given)
    for spec in fields(cls):
        name = spec.metadata.get("env")
        if name is None or spec.name in given:
            continue
        raw = env.get(name)
        if raw is None or raw == "":
            continue
        values[spec.name] = _parsed(name, raw, spec.default, spec.metadata)
    return cls(**values)


def env_names(cls) -> list[str]:
    """The environment variables `cls` reads through setting()."""
    return [f.metadata["env"] for f in fields(cls) if "env" in f.metadata]


def _parsed(name: str, raw: str, default, metadata):
    choices, parse = metadata["choices"], metadata["parse"]
    if choices and raw not in choices:
        raise ValueError(f"{name}={raw!r} is not one of: {', '.join(choices)}")
    if parse is not None:
        return parse(raw)
    kind = type(default)
    if kind is bool:
        return env_bool({name: raw}, name, default)
    if kind is int:
        return env_int({name: raw}, name, default)
    if kind is float:
        return env_float({name: raw}, name, default)
    if isinstance(default, Path):
        return path_setting(raw)
    return raw


def data_dir(env: Mapping[str, str]) -> Path:
    return Path(env.get("MLAAS_DATA_DIR") or Path.home() / ".mlaas").expanduser()


@dataclass(frozen=True)
class ServerSettings:
    """How one gRPC server listens and shuts down. Its port and metrics port are read per
    service (MLAAS_<SERVICE>_PORT, MLAAS_<SERVICE>_METRICS_PORT), the rest declared once here."""

    host: str = setting("MLAAS_HOST", LOOPBACK)
    port: int = 0
    # Prometheus /metrics port: 0 picks a free port, -1 turns it off.
    metrics_port: int = 0
    auth_tokens_file: str | None = setting("MLAAS_AUTH_TOKENS_FILE", None, parse=str)
    shutdown_grace_seconds: float = setting("MLAAS_SHUTDOWN_GRACE_SECONDS", 10.0)
    # Threads for unary calls and health checks; streams have threads of their own.
    max_workers: int = setting("MLAAS_MAX_WORKERS", 32)
    # Open streams of each streaming rpc: per kind, per caller, and per kind kept for the mesh's
    # own roles; a client stream idle this long is closed (mlaas.services.stream_slots).
    max_streams: int = setting("MLAAS_MAX_STREAMS", 16)
    max_streams_per_caller: int = setting("MLAAS_MAX_STREAMS_PER_CALLER", 4)
    reserved_streams: int = setting("MLAAS_RESERVED_STREAMS", 4)
    stream_idle_seconds: float = setting("MLAAS_STREAM_IDLE_SECONDS", 30.0)
    # A client stream open this long is closed however it sends (a slow drip holds no slot for ever).
    stream_max_seconds: float = setting("MLAAS_STREAM_MAX_SECONDS", 3600.0)
    # Without a tokens file servers bind to loopback unless this is set.
    allow_open_remote: bool = setting("MLAAS_ALLOW_OPEN_REMOTE", False)
    # The key that signs the credentials the scheduler mints for runtimes and jobs (mlaas.services.auth).
    mesh_key_file: str | None = setting("MLAAS_MESH_KEY_FILE", None, parse=str)
    # TLS (mTLS with a client CA, MLAAS_TLS_*: mlaas.tls); None: plaintext.
    tls: ServerTLS | None = None
    # With a tokens file, a server beyond loopback refuses to start without TLS unless this is set
    # (bearer tokens would cross the network in clear).
    allow_plaintext: bool = setting("MLAAS_ALLOW_PLAINTEXT", False)

    def __post_init__(self):
        if min(self.max_workers, self.max_streams, self.max_streams_per_caller) < 1 or self.reserved_streams < 0:
            raise ValueError(
                "MLAAS_MAX_WORKERS, MLAAS_MAX_STREAMS and MLAAS_MAX_STREAMS_PER_CALLER must be at least 1 "
                "and MLAAS_RESERVED_STREAMS at least 0"
            )
        if self.stream_idle_seconds <= 0 or self.stream_max_seconds <= 0:
            raise ValueError("MLAAS_STREAM_IDLE_SECONDS and MLAAS_STREAM_MAX_SECONDS must be positive")

    @classmethod
    def from_env(cls, env: Mapping[str, str], service: str, default_port: int) -> ServerSettings:
        """Reads MLAAS_HOST, MLAAS_<SERVICE>_PORT, MLAAS_<SERVICE>_METRICS_PORT and the shared knobs
        (MLAAS_TLS_CERT, MLAAS_TLS_KEY and MLAAS_TLS_CLIENT_CA among them)."""
        upper = service.upper()
        return read_env(
            cls, env, port=env_int(env, f"MLAAS_{upper}_PORT", default_port),
            metrics_port=env_int(env, f"MLAAS_{upper}_METRICS_PORT", 0), tls=ServerTLS.from_env(env),
        )  # fmt: skip


def current_env() -> Mapping[str, str]:
    return os.environ
