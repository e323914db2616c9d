"""Files only their owner may read (tokens, keys, passwords)."""

from __future__ import annotations

import os
from pathlib import Path


def write_private(path: Path, text: str) -> None:
    """Writes `text` to `path` with mode 0600 (created so: never readable by others, even briefly)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)
    os.chmod(path, 0o600)  # an existing file keeps its mode through O_CREAT


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
