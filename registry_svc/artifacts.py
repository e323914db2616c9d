"""Content-addressed artifact storage: files in the data dir, or objects in S3.

Blobs are named by their sha256, so the same bytes are stored once however many versions use
them, and a blob is never rewritten in place.
"""

from __future__ import annotations

import logging
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol
from urllib.parse import urlparse

log = logging.getLogger(__name__)

CHUNK_BYTES = 1 << 20


class ArtifactStore(Protocol):
    def put(self, sha256: str, source: Path) -> None:
        """Stores the file under its digest (a no-op when the blob is already there)."""

    def read(self, sha256: str, chunk_bytes: int = CHUNK_BYTES) -> Iterator[bytes]: ...

    def delete(self, sha256: str) -> None: ...

    def exists(self, sha256: str) -> bool: ...

    def digests(self) -> Iterator[str]:
        """Every stored digest (for garbage collection)."""


def _shard(sha256: str) -> str:
    return f"{sha256[:2]}/{sha256}"


class LocalArtifactStore:
    def __init__(self, root: Path):
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)

    def path(self, sha256: str) -> Path:
        return self.root / _shard(sha256)

    def put(self, sha256: str, source: Path) -> None:
        dest = self.path(sha256)
        if dest.exists():
            return
        dest.parent.mkdir(parents=True, exist_ok=True)
        partial = dest.with_name(f"{sha256}.{uuid.uuid4().hex}.partial")  # concurrent puts never collide
        shutil.copyfile(source, partial)
        os.replace(partial, dest)  # atomic: readers never see half a blob

    def read(self, sha256: str, chunk_bytes: int = CHUNK_BYTES) -> Iterator[bytes]:
        with open(self.path(sha256), "rb") as f:
            while chunk := f.read(chunk_bytes):
                yield chunk

    def delete(self, sha256: str) -> None:
        self.path(sha256).unlink(missing_ok=True)

    def exists(self, sha256: str) -> bool:
        return self.path(sha256).exists()

    def digests(self) -> Iterator[str]:
        for path in self.root.glob("??/*"):
            if not path.name.endswith(".partial"):
                yield path.name


class S3ArtifactStore:
    def __init__(self, bucket: str, prefix: str, endpoint_url: str | None = None):
        import boto3

        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self._s3 = boto3.client("s3", endpoint_url=endpoint_url)

    def _key(self, sha256: str) -> str:
        return f"{self.prefix}/{_shard(sha256)}" if self.prefix else _shard(sha256)

    def put(self, sha256: str, source: Path) -> None:
        if not self.exists(sha256):
            # upload_file streams the file and switches to multipart upload for large ones.
            self._s3.upload_file(str(source), self.bucket, self._key(sha256))

    def read(self, sha256: str, chunk_bytes: int = CHUNK_BYTES) -> Iterator[bytes]:
        body = self._s3.get_object(Bucket=self.bucket, Key=self._key(sha256))["Body"]
        try:
            yield from body.iter_chunks(chunk_bytes)
        finally:
            body.close()

    def delete(self, sha256: str) -> None:
        self._s3.delete_object(Bucket=self.bucket, Key=self._key(sha256))

    def exists(self, sha256: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            self._s3.head_object(Bucket=self.bucket, Key=self._key(sha256))
            return True
        except ClientError as err:
            if err.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise

    def digests(self) -> Iterator[str]:
        paginator = self._s3.get_paginator("list_objects_v2")
        prefix = f"{self.prefix}/" if self.prefix else ""
        for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
            for obj in page.get("Contents", []):
                yield obj["Key"].rsplit("/", 1)[-1]


def open_store(uri: str, data_dir: Path, s3_endpoint_url: str | None = None) -> ArtifactStore:
    """The store for MLAAS_ARTIFACT_STORE: "" (the data dir) or s3://bucket/prefix."""
    if not uri:
        return LocalArtifactStore(data_dir / "artifacts")
    parsed = urlparse(uri)
    if parsed.scheme == "s3" and parsed.netloc:
        return S3ArtifactStore(parsed.netloc, parsed.path, s3_endpoint_url)
    if parsed.scheme == "file":
        return LocalArtifactStore(Path(parsed.path))
    raise ValueError(f"MLAAS_ARTIFACT_STORE={uri!r}: use s3://bucket/prefix or file:///path")
