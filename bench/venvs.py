"""Benchmark-only virtual environments (bench/.venvs/NAME) for peers whose dependencies clash
with the project's (MLServer needs protobuf<7, alibi-detect numpy<2). Created on first use;
a marker file records a finished install, so an interrupted one is retried."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

VENVS = Path(__file__).resolve().parent / ".venvs"


def ensure_venv(name: str, packages: Sequence[str]) -> Path | None:
    """The venv's bin directory, or None (with a message) when the packages cannot be installed."""
    home = VENVS / name
    marker = home / ".installed"
    wanted = "\n".join(packages)
    if marker.exists() and marker.read_text() == wanted:
        return home / "bin"
    print(f"preparing bench/.venvs/{name} ({', '.join(packages)})...", flush=True)
    if not (home / "bin" / "python").exists():
        subprocess.run([sys.executable, "-m", "venv", str(home)], check=True)
    result = subprocess.run([str(home / "bin" / "python"), "-m", "pip", "install", "-q", *packages], check=False)
    if result.returncode != 0:
        print(f"{name} could not be installed; its columns stay empty", flush=True)
        return None
    marker.write_text(wanted)
    return home / "bin"
