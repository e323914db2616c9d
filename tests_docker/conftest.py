"""`make test-docker`: the Docker backend on a real engine (started by scripts/docker_image.py
when none runs), with the uniform image built here from a debootstrap base."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import iris_model, registry, registry_settings, start_registry  # noqa: F401 (fixtures)

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def image() -> str:
    built = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "docker_image.py")], capture_output=True, text=True, timeout=3600
    )
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    return built.stdout.strip().splitlines()[-1]
