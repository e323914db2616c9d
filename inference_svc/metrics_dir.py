"""The directory where a runtime's workers write their Prometheus values for the parent to sum.
prometheus_client picks its multiprocess mode when it is first imported, and the workers are
forked with the parent's modules already imported: the directory is named in the environment
before anything imports prometheus_client (`python -m inference_svc` does it first thing)."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psutil

PREFIX = "mlaas-runtime-metrics-"
ENV = "PROMETHEUS_MULTIPROC_DIR"


def _remove_orphans() -> None:
    """The directories of runtimes killed before they could remove theirs (each is named after
    its runtime's pid)."""
    for stale in Path(tempfile.gettempdir()).glob(f"{PREFIX}*"):
        pid = stale.name.removeprefix(PREFIX).split("-", 1)[0]
        if pid.isdigit() and not psutil.pid_exists(int(pid)):
            shutil.rmtree(stale, ignore_errors=True)


@contextlib.contextmanager
def metrics_dir() -> Iterator[str]:
    """A fresh directory named in this process's environment (and so its workers'), removed
    with the values in it when the runtime ends."""
    _remove_orphans()
    path = tempfile.mkdtemp(prefix=f"{PREFIX}{os.getpid()}-")
    os.environ[ENV] = path
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
