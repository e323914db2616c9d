"""Tenancy on the scheduler: with a tokens file, a tenant sees only its own deployments (and
those it holds a lease on) and steers only its own; the registry's role lists every tenant's
deployments (its deletion guard), and the monitor's role reads them and rolls one to a retrained
version on its owner's behalf."""

from __future__ import annotations

import pytest
from sklearn.linear_model import LogisticRegression

from mlaas import errors
from mlaas.client import RegistryClient, SchedulerClient
from mlaas.export import register_sklearn
from mlaas.services.auth import MONITOR, REGISTRY, RUNTIME
from mlaas.v1 import scheduler_pb2 as S
from tests.scheduler_svc.conftest import ONE_CPU


def test_tenants_see_their_own_deployments_and_the_roles_what_they_need(parts, identities, iris_model):
    address = f"127.0.0.1:{parts.start(server=identities.server()).server.port}"
    with (
        SchedulerClient(address, identities.token("alpha")) as alpha,
        SchedulerClient(address, identities.token("beta")) as beta,
        SchedulerClient(address, identities.token(REGISTRY)) as registry_role,
        SchedulerClient(address, identities.token(MONITOR)) as monitor_role,
    ):
        deployment = alpha.wait_ready(alpha.deploy("iris").id)
        assert deployment.state == S.DEPLOYMENT_STATE_READY and deployment.tenant == "alpha"
        assert [d.id for d in alpha.list()] == [deployment.id]

        assert beta.list() == []
        with pytest.raises(errors.NotFound, match="not found"):
            beta.get(deployment.id)
        with pytest.raises(errors.NotFound):
            beta.decommission(deployment.id)

        assert [d.id for d in registry_role.list(model_name="iris", model_version=1)] == [deployment.id]
        assert monitor_role.get(deployment.id).tenant == "alpha"
        assert registry_role.get(deployment.id).state == S.DEPLOYMENT_STATE_READY  # does a credential's scope live?
        for role in (registry_role, monitor_role):
            with pytest.raises(errors.PermissionDenied, match="may not call"):
                role.deploy("iris")
        runtime = identities.minted(RUNTIME, deployment.id, "iris:1")
        with SchedulerClient(address, runtime) as replica, pytest.raises(errors.Unauthenticated, match="not meant"):
            replica.get(deployment.id)  # a runtime's credential is for the registry and the Monitor only

        # The Monitor rolls a retrained version out on the owner's behalf; another tenant cannot.
        _, X, y = iris_model
        with RegistryClient(parts.registry_address) as registry:
            register_sklearn(registry, LogisticRegression(C=0.05, max_iter=300).fit(X, y), "iris", X,
                             run_resources=ONE_CPU)  # fmt: skip
        with pytest.raises(errors.NotFound):
            beta.update(deployment.id, "iris:2")
        assert monitor_role.update(deployment.id, "iris:2").state == S.DEPLOYMENT_STATE_UPDATING
        assert alpha.wait_settled(deployment.id).model.version == 2

        # A trial beside it is the owner's to start and end, and the Monitor's to end; nobody else's.
        with RegistryClient(parts.registry_address) as registry:
            register_sklearn(registry, LogisticRegression(C=0.2, max_iter=300).fit(X, y), "iris", X,
                             run_resources=ONE_CPU)  # fmt: skip
        for attempt in (lambda: beta.start_trial(deployment.id, "iris:3"), lambda: beta.end_trial(deployment.id, True)):
            with pytest.raises(errors.NotFound):
                attempt()
        alpha.start_trial(deployment.id, "iris:3", canary_percent=25)
        trying = alpha.wait_settled(deployment.id)
        assert trying.trial == S.Trial(version=3, mode=S.TRIAL_MODE_CANARY, canary_percent=25)
        assert [r.trial_version for r in trying.replica_status] == [3]
        with pytest.raises(errors.NotFound):
            beta.get(deployment.id)  # nor does it see it
        # Nor does a Deploy of the served version give it a lease there (it would get the owner's
        # challenger's answers, and its labels would judge the trial): it gets a deployment of its own.
        own = beta.deploy("iris:2")
        assert own.id != deployment.id and own.tenant == "beta" and not own.HasField("trial")
        beta.decommission(own.id)
        monitor_role.end_trial(deployment.id, promote=False)
        ended = alpha.wait_settled(deployment.id)
        assert not ended.HasField("trial") and ended.model.version == 2
        assert [r.trial_version for r in ended.replica_status] == [0]


def test_a_lease_holder_uses_a_shared_deployment_but_does_not_steer_it(parts, identities):
    address = f"127.0.0.1:{parts.start(server=identities.server()).server.port}"
    with (
        SchedulerClient(address, identities.token("alpha")) as alpha,
        SchedulerClient(address, identities.token("beta")) as beta,
    ):
        deployment = alpha.wait_ready(alpha.deploy("iris").id)
        shared = beta.deploy("iris")
        assert shared.id == deployment.id  # a lease on alpha's deployment
        assert beta.get(deployment.id).tenant == "alpha"
        for change in (
            lambda: beta.scale(deployment.id, 2), lambda: beta.update(deployment.id, "iris:1"),
            lambda: beta.start_trial(deployment.id, "iris:1"),
        ):  # fmt: skip
            with pytest.raises(errors.PermissionDenied, match="only the owner"):
                change()
        assert alpha.get(deployment.id).replicas == 1
        watching = beta.watch(deployment.id)
        next(watching)  # the history, while beta holds its lease
        beta.decommission(deployment.id)  # its own lease: that is its to drop
        with pytest.raises(errors.NotFound):
            beta.get(deployment.id)
        with pytest.raises(errors.NotFound):  # and its watch ends with it
            for _ in watching:
                pass


def test_a_tenant_cannot_fill_the_queue_or_the_nodes_for_everyone(parts, identities):
    scheduler = parts.start(
        server=identities.server(), max_deployments_per_tenant=2, max_queued_per_tenant=1, placement_timeout_seconds=600
    )
    address = f"127.0.0.1:{scheduler.server.port}"
    with (
        SchedulerClient(address, identities.token("alpha")) as alpha,
        SchedulerClient(address, identities.token("beta")) as beta,
    ):
        placed = alpha.wait_ready(alpha.deploy("iris").id)
        waiting = alpha.deploy("iris-c", strict_node="tiny")  # 1 CPU on a node of 500m: it waits
        with pytest.raises(errors.ResourceExhausted, match="you own 2 deployments, the quota"):
            alpha.deploy("iris-b")
        alpha.decommission(placed.id)  # CACHED, then gone: alpha owns 1, still waiting
        with pytest.raises(errors.ResourceExhausted, match="1 deployments waiting for placement, the quota"):
            alpha.deploy("iris-b", strict_node="tiny")
        assert beta.wait_ready(beta.deploy("iris-b").id).state == S.DEPLOYMENT_STATE_READY  # others go on
        alpha.decommission(waiting.id)


def test_reviving_ones_own_cached_deployment_counts_against_the_quota(parts, identities):
    """Decommission-then-Deploy cycles once let a tenant hold any number of READY deployments
    past its quota: a cached one is not counted, and its revival skipped the check."""
    scheduler = parts.start(server=identities.server(), max_deployments_per_tenant=1)
    with SchedulerClient(f"127.0.0.1:{scheduler.server.port}", identities.token("alpha")) as alpha:
        cached = alpha.wait_ready(alpha.deploy("iris").id)
        alpha.decommission(cached.id)  # CACHED: alpha owns none
        alpha.wait_ready(alpha.deploy("iris-b").id)  # owns one, the quota
        with pytest.raises(errors.ResourceExhausted, match="you own 1 deployments, the quota"):
            alpha.deploy("iris")
        assert alpha.get(cached.id).state == S.DEPLOYMENT_STATE_CACHED
