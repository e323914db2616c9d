from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from mlaas.settings import ServerSettings, data_dir, env_float, env_int

DEFAULT_PORT = 50053


@dataclass(frozen=True)
class MonitorSettings:
    server: ServerSettings
    data_dir: Path
    registry_address: str = "127.0.0.1:50051"
    scheduler_address: str = "127.0.0.1:50052"
    # Predictions kept per deployment to match labels with and to retrain on.
    keep_predictions: int = 50_000
    # A label whose prediction has not come within this long is dropped.
    unmatched_label_seconds: float = 86_400.0
    # The token the Monitor presents to the registry and scheduler (retraining), if auth is on.
    token: str | None = None
    # Where retraining data and models go for the scheduler's training jobs (shared with it).
    jobs_dir: Path | None = None

    @property
    def training_dir(self) -> Path:
        return self.jobs_dir or self.data_dir / "jobs"

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> MonitorSettings:
        return cls(
            server=ServerSettings.from_env(env, "monitor", DEFAULT_PORT),
            data_dir=data_dir(env),
            registry_address=env.get("MLAAS_REGISTRY_ADDR") or "127.0.0.1:50051",
            scheduler_address=env.get("MLAAS_SCHEDULER_ADDR") or "127.0.0.1:50052",
            keep_predictions=env_int(env, "MLAAS_MONITOR_KEEP_PREDICTIONS", 50_000),
            unmatched_label_seconds=env_float(
                env, "MLAAS_MONITOR_UNMATCHED_LABEL_SECONDS", cls.unmatched_label_seconds
            ),
            token=env.get("MLAAS_TOKEN") or None,
            jobs_dir=Path(env["MLAAS_JOBS_DIR"]) if env.get("MLAAS_JOBS_DIR") else None,
        )

    @property
    def database_path(self) -> Path:
        return self.data_dir / "monitor.sqlite3"
