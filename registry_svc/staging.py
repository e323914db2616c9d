"""Uploads land in a staging file, hashed as they stream, never held in memory."""

from __future__ import annotations

import hashlib
import uuid
from pathlib import Path
from typing import BinaryIO

from mlaas.errors import InvalidArgument


class StagedFile:
    def __init__(self, directory: Path, what: str, max_bytes: int):
        self.path = directory / f"{uuid.uuid4().hex}.{what}.part"
        self.what = what
        self.max_bytes = max_bytes
        self.size = 0
        self._hash = hashlib.sha256()
        self._file: BinaryIO | None = None

    def write(self, chunk: bytes) -> None:
        if self.size + len(chunk) > self.max_bytes:
            raise InvalidArgument(f"{self.what} exceeds the limit of {self.max_bytes} bytes")
        if self._file is None:
            self._file = open(self.path, "wb")  # noqa: SIM115 - open across chunks, closed in close()
        self._file.write(chunk)
        self._hash.update(chunk)
        self.size += len(chunk)

    @property
    def sha256(self) -> str:
        return self._hash.hexdigest()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def discard(self) -> None:
        self.close()
        self.path.unlink(missing_ok=True)
