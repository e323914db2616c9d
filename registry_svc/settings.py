from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from mlaas.settings import ServerSettings, data_dir, env_int, env_str

DEFAULT_PORT = 50051


@dataclass(frozen=True)
class RegistrySettings:
    server: ServerSettings
    data_dir: Path
    # "" keeps artifacts in the data dir; "s3://bucket/prefix" puts them in S3.
    artifact_store: str = ""
    s3_endpoint_url: str | None = None
    max_artifact_bytes: int = 4 * 2**30
    max_reference_bytes: int = 256 * 2**20
    # When set, deleting a version asks this scheduler whether it is deployed.
    scheduler_address: str | None = None
    # The registry role's token (mlaas-registry under auth), for the guard's ListDeployments.
    scheduler_token: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> RegistrySettings:
        return cls(
            server=ServerSettings.from_env(env, "registry", DEFAULT_PORT),
            data_dir=data_dir(env),
            artifact_store=env_str(env, "MLAAS_ARTIFACT_STORE", ""),
            s3_endpoint_url=env.get("MLAAS_S3_ENDPOINT_URL") or None,
            max_artifact_bytes=env_int(env, "MLAAS_MAX_ARTIFACT_BYTES", 4 * 2**30),
            max_reference_bytes=env_int(env, "MLAAS_MAX_REFERENCE_BYTES", 256 * 2**20),
            scheduler_address=env.get("MLAAS_SCHEDULER_ADDR") or None,
            scheduler_token=env.get("MLAAS_TOKEN") or None,
        )

    @property
    def database_path(self) -> Path:
        return self.data_dir / "registry.sqlite3"

    @property
    def staging_dir(self) -> Path:
        return self.data_dir / "staging"
