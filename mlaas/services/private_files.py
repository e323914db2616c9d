"""Files only their owner may read (tokens, keys, passwords)."""

from __future__ import annotations

import os
from pathlib import Path


def write_private(path: Path, data: str | bytes) -> None:
    """Writes `data` to `path` readable by its owner only (created so: never by others, even
    briefly), and atomically (never a half-written key)."""
    partial = path.with_name(f".{path.name}.partial")
    partial.unlink(missing_ok=True)
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data.encode() if isinstance(data, str) else data)
    partial.replace(path)


def private_by_default() -> None:
    """Everything this process (and its children) creates is its owner's alone: the data dir
    holds every tenant's private models, inputs, labels and the deployments' state, on a machine
    other users may share."""
    os.umask(0o077)


def private_dir(path: Path) -> Path:
    """`path`, created if need be and made 0700 (an existing one too: its files were made before)."""
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o700)
    return path
