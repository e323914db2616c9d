from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from mlaas import addresses
from mlaas.services.settings import ServerSettings, data_dir, read_env, setting

DEFAULT_PORT = addresses.MONITOR_PORT


@dataclass(frozen=True)
class MonitorSettings:
    """Each tunable with its environment variable and default, declared once (read_env)."""

    server: ServerSettings
    data_dir: Path
    registry_address: str = setting("MLAAS_REGISTRY_ADDR", addresses.REGISTRY)
    scheduler_address: str = setting("MLAAS_SCHEDULER_ADDR", addresses.SCHEDULER)
    # Predictions kept per deployment to match labels with and to retrain on.
    keep_predictions: int = setting("MLAAS_MONITOR_KEEP_PREDICTIONS", 50_000)
    # A label whose prediction has not come within this long is dropped.
    unmatched_label_seconds: float = setting("MLAAS_MONITOR_UNMATCHED_LABEL_SECONDS", 86_400.0)
    # The token the Monitor presents to the registry and scheduler (retraining), if auth is on.
    token: str | None = setting("MLAAS_TOKEN", None, parse=str)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> MonitorSettings:
        return read_env(cls, env, server=ServerSettings.from_env(env, "monitor", DEFAULT_PORT), data_dir=data_dir(env))

    @property
    def database_path(self) -> Path:
        return self.data_dir / "monitor.sqlite3"
