"""Settings declared once (mlaas.services.settings.setting/read_env): each variable read as its
declaration says, a value that is not one of its choices refused by name, every declared
variable in the README's configuration table and every variable of the table read by the code."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from inference_svc.settings import BatchPolicy, DataRefPolicy, RuntimeSettings, TenantShare
from mlaas.services.settings import ServerSettings, env_names
from monitor_svc.settings import MonitorSettings
from registry_svc.settings import RegistrySettings
from scheduler_svc.settings import SchedulerSettings

DECLARED = (ServerSettings, RegistrySettings, SchedulerSettings, MonitorSettings, RuntimeSettings, BatchPolicy,
            TenantShare, DataRefPolicy)  # fmt: skip
ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
# Read per service by name (mlaas.services.settings.ServerSettings.from_env), not declared one by one.
PER_SERVICE = re.compile(r"MLAAS_(REGISTRY|SCHEDULER|MONITOR|INFERENCE)_(PORT|METRICS_PORT)$")


def test_values_are_read_as_declared_and_defaults_stay_where_they_are_declared():
    scheduler = SchedulerSettings.from_env({"MLAAS_CACHE_TTL_SECONDS": "5", "MLAAS_JOBS_DIR": "/srv/jobs",
                                            "MLAAS_PLACEMENT_WORKERS": "4"})  # fmt: skip
    assert (scheduler.cache_ttl_seconds, scheduler.jobs_dir, scheduler.placement_workers) == (5.0, Path("/srv/jobs"), 4)
    assert scheduler.backend == "local" and scheduler.retention_seconds == SchedulerSettings.retention_seconds
    runtime = RuntimeSettings.from_env({"MLAAS_MAX_QUEUE_ROWS": "1000", "MLAAS_DATA_URI_ROOTS": "/a:/b",
                                        "MLAAS_DATA_URI_HOSTS": "x, y", "MLAAS_MODEL": "iris@champion"})  # fmt: skip
    assert runtime.batch.max_queue_rows == 1000 and runtime.tenant_share.max_rows == 500  # half the queue
    assert runtime.data_refs.file_roots == (Path("/a"), Path("/b")) and runtime.data_refs.https_hosts == ("x", "y")
    assert runtime.models == ("iris@champion",) and runtime.batch.max_batch_size == BatchPolicy.max_batch_size


@pytest.mark.parametrize(
    ("settings", "env", "message"),
    [(SchedulerSettings, {"MLAAS_BACKEND": "kubernets"}, "MLAAS_BACKEND='kubernets' is not one of: local, docker, "),
     (RuntimeSettings, {"MLAAS_FEEDBACK_MODE": "summary"}, "is not one of: records, summaries"),
     (SchedulerSettings, {"MLAAS_PLACEMENT_WORKERS": "two"}, "MLAAS_PLACEMENT_WORKERS='two' is not an integer"),
     (RuntimeSettings, {"MLAAS_DATA_URI_ALLOW_PRIVATE": "maybe"}, "is not a boolean")],
)  # fmt: skip
def test_a_value_that_cannot_be_meant_is_refused_by_name(settings, env, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        settings.from_env(env)


def documented() -> set[str]:
    text = README.read_text()
    table = text[text.index("## Configuration") : text.index("## Security")]
    return set(re.findall(r"`(MLAAS_[A-Z0-9_]+)`", table))


def test_every_declared_variable_is_in_the_readmes_configuration_table():
    names = documented()
    missing = {cls.__name__: [n for n in env_names(cls) if n not in names] for cls in DECLARED}
    assert not any(missing.values()), missing


def test_every_variable_in_the_table_is_read_by_the_code():
    """The other way round: the table names nothing the code has stopped reading (those read
    one by one, like MLAAS_NODES or MLAAS_TLS_CERT, are found in the sources)."""
    sources = (
        "".join(
            path.read_text()
            for package in ("mlaas", "registry_svc", "scheduler_svc", "monitor_svc", "inference_svc", "scripts", "k8s")
            for path in (ROOT / package).rglob("*")
            if path.suffix in (".py", ".sh", ".yaml") and "_pb2" not in path.name
        )
        + (ROOT / "Dockerfile").read_text()
    )
    stale = sorted(n for n in documented() if n not in sources and not PER_SERVICE.match(n))
    assert not stale, stale
