"""Settings declared once (mlaas.settings.setting/read_env): each variable read as its
declaration says, a value that is not one of its choices refused by name, and every declared
variable in the README's configuration table."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from inference_svc.batcher import BatchPolicy
from inference_svc.data_refs import DataRefPolicy
from inference_svc.limits import TenantShare
from inference_svc.settings import RuntimeSettings
from mlaas.settings import env_names
from scheduler_svc.settings import SchedulerSettings

DECLARED = (SchedulerSettings, RuntimeSettings, BatchPolicy, TenantShare, DataRefPolicy)
README = Path(__file__).resolve().parents[2] / "README.md"


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


def test_every_declared_variable_is_in_the_readmes_configuration_table():
    text = README.read_text()
    table = text[text.index("## Configuration") : text.index("## Security")]
    documented = set(re.findall(r"`(MLAAS_[A-Z0-9_]+)`", table))
    missing = {cls.__name__: [n for n in env_names(cls) if n not in documented] for cls in DECLARED}
    assert not any(missing.values()), missing
