from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from mlaas import addresses
from mlaas.services.settings import ServerSettings, data_dir, read_env, setting

DEFAULT_PORT = addresses.REGISTRY_PORT


@dataclass(frozen=True)
class RegistrySettings:
    """Each tunable with its environment variable and default, declared once (read_env)."""

    server: ServerSettings
    data_dir: Path
    # "" keeps artifacts in the data dir; "s3://bucket/prefix" puts them in S3.
    artifact_store: str = setting("MLAAS_ARTIFACT_STORE", "")
    s3_endpoint_url: str | None = setting("MLAAS_S3_ENDPOINT_URL", None, parse=str)
    max_artifact_bytes: int = setting("MLAAS_MAX_ARTIFACT_BYTES", 4 * 2**30)
    max_reference_bytes: int = setting("MLAAS_MAX_REFERENCE_BYTES", 256 * 2**20)
    # How often a running registry removes what uploads killed mid-way left (and at every start).
    sweep_seconds: float = setting("MLAAS_REGISTRY_SWEEP_SECONDS", 60.0)
    # When set, deleting a version asks this scheduler whether it is deployed.
    scheduler_address: str | None = setting("MLAAS_SCHEDULER_ADDR", None, parse=str)
    # The registry role's token (mlaas-registry under auth), for the guard's ListDeployments.
    scheduler_token: str | None = setting("MLAAS_TOKEN", None, parse=str)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> RegistrySettings:
        return read_env(cls, env, server=ServerSettings.from_env(env, "registry", DEFAULT_PORT), data_dir=data_dir(env))

    @property
    def database_path(self) -> Path:
        return self.data_dir / "registry.sqlite3"

    @property
    def staging_dir(self) -> Path:
        return self.data_dir / "staging"
