"""A registry restarted after a crash (kill -9 mid-upload) cleans up after itself: staged
uploads and half-copied blobs nobody touches any more, and blobs no version references, while
what another upload is writing now stays."""

from __future__ import annotations

import dataclasses
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


def test_a_running_registry_removes_an_abandoned_upload_without_a_restart(start_registry, registry_settings):
    """A killed client's upload once stayed in staging (87-315 MB each in the attack probe) until
    the registry was restarted at least 10 minutes later."""
    start_registry(dataclasses.replace(registry_settings, sweep_seconds=0.2))
    staging = registry_settings.staging_dir
    abandoned = _aged(staging / "dead.artifact.part", ABANDONED_UPLOAD_SECONDS + 60)
    in_flight = _aged(staging / "live.artifact.part", 5)
    deadline = time.monotonic() + 30
    while abandoned.exists():
        assert time.monotonic() < deadline, "the running registry kept an abandoned upload"
        time.sleep(0.1)
    assert in_flight.exists()  # what is being written now stays
