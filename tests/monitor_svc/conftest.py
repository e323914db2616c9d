"""The Monitor on real parts: the scheduler fixtures (embedded Redis, registry, runtime child
processes) plus a Monitor server in this process over a real SQLite file."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from mlaas.services.settings import ServerSettings
from monitor_svc.app import Monitor, build_monitor
from monitor_svc.settings import MonitorSettings
from tests.scheduler_svc.conftest import mesh, parts  # noqa: F401 (fixtures)


@pytest.fixture
def start_monitor(tmp_path) -> Callable[..., Monitor]:
    """start_monitor(registry, scheduler, server=None, token=None): a Monitor server (with the
    auth of `server`'s settings, presenting `token` to the others); all are stopped at teardown."""
    started: list[Monitor] = []

    def start(
        registry_address: str, scheduler_address: str = "127.0.0.1:1", server=None, token: str | None = None
    ) -> Monitor:
        settings = MonitorSettings(
            server=server or ServerSettings(port=0, metrics_port=-1, shutdown_grace_seconds=1),
            token=token,
            data_dir=tmp_path / "monitor",
            registry_address=registry_address,
            scheduler_address=scheduler_address,
        )
        monitor = build_monitor(settings).start()
        started.append(monitor)
        return monitor

    yield start
    for monitor in started:
        monitor.stop(0)
