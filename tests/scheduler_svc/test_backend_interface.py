"""Every backend the scheduler can be built with, including the benchmark's, implements the
whole Backend interface: a method added to the interface and forgotten in one backend would
otherwise only fail when the scheduler first calls it (as Scheduler.stop's close() once broke
bench/scheduler_bench.py)."""

from __future__ import annotations

import importlib.util
import inspect
from pathlib import Path

import pytest

from scheduler_svc.backends import Backend
from scheduler_svc.backends.docker import DockerBackend
from scheduler_svc.backends.kubernetes import KubernetesBackend
from scheduler_svc.backends.local import LocalBackend

ROOT = Path(__file__).resolve().parents[2]


def _bench_backend():
    spec = importlib.util.spec_from_file_location("scheduler_bench", ROOT / "bench" / "scheduler_bench.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.HealthOnlyBackend


INTERFACE = {
    name: inspect.signature(member)
    for name, member in vars(Backend).items()
    if inspect.isfunction(member) and not name.startswith("_")
}


@pytest.mark.parametrize("backend", [LocalBackend, DockerBackend, KubernetesBackend, _bench_backend()])
def test_every_backend_implements_the_whole_interface(backend):
    assert {"create", "start_job", "status", "logs", "delete", "close"} <= set(INTERFACE)
    assert isinstance(getattr(backend, "name", None), str), f"{backend.__name__} has no name"
    for name, wanted in INTERFACE.items():
        method = getattr(backend, name, None)
        assert callable(method), f"{backend.__name__} lacks {name}{wanted}"
        assert list(inspect.signature(method).parameters) == list(wanted.parameters), (
            f"{backend.__name__}.{name}{inspect.signature(method)} differs from the interface's {name}{wanted}"
        )
