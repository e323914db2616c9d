"""A real two-tenant mesh for the attack tests: `mlaas up` with a tokens file of tenants alpha
and beta (its components get their own role tokens and the mesh key), real runtimes, real Redis.
Deployments are destroyed as soon as their last lease goes (a cache TTL of 0), so that each test
ends with no runtime of its own left."""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from mlaas.client import RegistryClient, SchedulerClient
from mlaas.errors import NotFound
from mlaas.v1 import scheduler_pb2
from tests.conftest import tool_env
from tests.inference_svc.conftest import models_dir  # noqa: F401 (fixture)
from tests.scheduler_svc.conftest import parts  # noqa: F401 (fixture)

TOKENS = {"alpha": "token-alpha", "beta": "token-beta"}


@dataclass
class Mesh:
    registry: str
    scheduler: str
    monitor: str
    data_dir: Path

    def registry_as(self, tenant: str) -> RegistryClient:
        return RegistryClient(self.registry, TOKENS[tenant])

    def scheduler_as(self, tenant: str) -> SchedulerClient:
        return SchedulerClient(self.scheduler, TOKENS[tenant])


@pytest.fixture(scope="module")
def mesh(tmp_path_factory) -> Iterator[Mesh]:
    root = tmp_path_factory.mktemp("mesh")
    tokens = root / "tokens.yaml"
    tokens.write_text("".join(f"{token}: {tenant}\n" for tenant, token in TOKENS.items()))
    command = [
        sys.executable, "-m", "mlaas.cli", "up", "--json", "--data-dir", str(root / "data"),
        "--registry-port", "0", "--registry-metrics-port", "-1", "--scheduler-port", "0",
        "--scheduler-metrics-port", "-1", "--monitor-port", "0", "--monitor-metrics-port", "-1",
    ]  # fmt: skip
    # Shorter than the defaults, so that the tests see them: client streams idle for 10 s are
    # closed, and minted credentials live 30 s (renewed every 10 s).
    env = tool_env(
        MLAAS_AUTH_TOKENS_FILE=str(tokens),
        MLAAS_CACHE_TTL_SECONDS="0",
        MLAAS_STREAM_IDLE_SECONDS="10",
        MLAAS_CREDENTIAL_SECONDS="30",
    )
    up = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        endpoints = json.loads(up.stdout.readline())
        yield Mesh(endpoints["registry"], endpoints["scheduler"], endpoints["monitor"], root / "data")
    finally:
        up.send_signal(signal.SIGINT)
        up.wait(60)


@pytest.fixture
def deployed(mesh) -> Iterator[Callable[[str, str], scheduler_pb2.Deployment]]:
    """deployed(tenant, model): a READY deployment of the tenant's (or a lease on another's it
    shares), decommissioned (and so destroyed) when the test ends."""
    made: list[tuple[str, str]] = []

    def deploy(tenant: str, model: str) -> scheduler_pb2.Deployment:
        with mesh.scheduler_as(tenant) as scheduler:
            deployment = scheduler.wait_ready(scheduler.deploy(model).id)
        made.append((tenant, deployment.id))
        return deployment

    yield deploy
    # Every lease first (a shared deployment goes with its last), whatever the test did: a lease
    # a failed test left behind kept its deployment, and the next tests, failing.
    for tenant, deployment_id in made:
        with mesh.scheduler_as(tenant) as scheduler, contextlib.suppress(NotFound):  # dropped by the test
            scheduler.decommission(deployment_id)
    owners: dict[str, str] = {}  # who deployed it first: a tenant with no lease left may not see it
    for tenant, deployment_id in made:
        owners.setdefault(deployment_id, tenant)
    for deployment_id, tenant in owners.items():
        with mesh.scheduler_as(tenant) as scheduler:
            deadline = time.monotonic() + 30
            while scheduler.get(deployment_id).state != scheduler_pb2.DEPLOYMENT_STATE_DESTROYED:
                assert time.monotonic() < deadline, f"{deployment_id} was not destroyed"
                time.sleep(0.1)
