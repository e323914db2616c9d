"""A registry restarted after a crash (kill -9 mid-upload) cleans up after itself: staged
uploads and half-copied blobs nobody touches any more, and blobs no version references, while
what another upload is writing now stays."""

from __future__ import annotations

import os
import time

from registry_svc.app import ABANDONED_UPLOAD_SECONDS, ORPHAN_MIN_AGE_SECONDS
from tests.conftest import tiny_onnx
from tests.registry_svc.helpers import describe


def _aged(path, seconds: float):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x" * 1024)
    then = time.time() - seconds
    os.utime(path, (then, then))
    return path


def test_a_restart_removes_what_crashed_uploads_left(start_registry, registry_settings, client):
    kept = client.register(tiny_onnx(), describe("kept")).model.artifact.sha256
    staging, blobs = registry_settings.staging_dir, registry_settings.data_dir / "artifacts"
    old = ABANDONED_UPLOAD_SECONDS + 60
    abandoned = [_aged(staging / "dead.artifact.part", old), _aged(blobs / "ab" / f"{'ab' * 32}.1234.partial", old)]
    orphan = _aged(blobs / "cd" / ("cd" * 32), ORPHAN_MIN_AGE_SECONDS + 60)
    in_flight = [_aged(staging / "live.artifact.part", 5), _aged(blobs / "ef" / f"{'ef' * 32}.5678.partial", 5)]
    start_registry(registry_settings)  # a second registry process on the same data dir: its start cleans
    assert not any(p.exists() for p in [*abandoned, orphan])
    assert all(p.exists() for p in in_flight)
    assert (blobs / kept[:2] / kept).exists()
