"""Tenancy on the Monitor: with a tokens file, a tenant reads only the monitoring of deployments
the scheduler shows it (its own, or ones it holds a lease on) and changes only its own
deployments' policy; feedback comes only from a runtime's minted credential, for its own
deployment and attributed to the model version the credential names, whatever the message
claims. Real scheduler, registry, Redis and runtime process; the Monitor asks the scheduler with
the caller's token."""

from __future__ import annotations

import grpc
import pytest

from mlaas import errors
from mlaas.client import MonitorClient, SchedulerClient
from mlaas.services.auth import MONITOR, RUNTIME
from mlaas.v1 import monitor_pb2 as M
from mlaas.v1 import monitor_pb2_grpc
from tests.conftest import feedback_record


def _feed(address: str, token: str, request: M.IngestFeedbackRequest) -> M.IngestFeedbackResponse:
    with grpc.insecure_channel(address) as channel:
        stub = monitor_pb2_grpc.MonitorServiceStub(channel)
        return stub.IngestFeedback(iter([request]), metadata=[("authorization", f"Bearer {token}")], timeout=30)


def test_a_tenant_reaches_only_the_monitoring_of_deployments_it_can_see(parts, start_monitor, identities, iris_model):
    scheduler_address = f"127.0.0.1:{parts.start(server=identities.server()).server.port}"
    monitor = start_monitor(parts.registry_address, scheduler_address, identities.server(), identities.token(MONITOR))
    address = f"127.0.0.1:{monitor.server.port}"
    with SchedulerClient(scheduler_address, "token-alpha") as owner:
        deployment_id = owner.wait_ready(owner.deploy("iris").id).id
    with SchedulerClient(scheduler_address, "token-beta") as other:
        beta_deployment = other.wait_ready(other.deploy("iris-b").id).id
    strict = M.MonitorPolicy(window_size=64, false_alarms_per_100k=40)

    with (
        MonitorClient(address, "token-alpha") as alpha,
        MonitorClient(address, "token-beta") as beta,
        MonitorClient(address, identities.token(MONITOR)) as operator,
    ):
        assert alpha.set_policy(deployment_id, strict).window_size == 64
        assert alpha.retrainings(deployment_id) == []

        for call in (
            lambda: beta.set_policy(deployment_id, M.MonitorPolicy(window_size=8)),
            lambda: beta.policy(deployment_id),
            lambda: beta.retrainings(deployment_id),
            lambda: beta.report(deployment_id),
            lambda: list(beta.drift_events(deployment_id)),
            lambda: next(iter(beta.watch_drift(deployment_id))),
            lambda: beta.report_labels(deployment_id, [("r1", "0")]),  # one batch: ReportLabelBatch
            lambda: beta.report_labels(deployment_id, [("r1", "0"), ("r2", "0")], batch=1),  # streamed
        ):
            with pytest.raises(errors.NotFound, match=f"deployment '{deployment_id}' not found"):
                call()
        assert alpha.policy(deployment_id).window_size == 64  # beta's policy never landed
        assert monitor.store.label_count(deployment_id) == (0, 0)  # nor its label
        assert operator.policy(deployment_id).window_size == 64

        # Feedback: no tenant feeds a deployment's detectors, not even its owner; a runtime feeds
        # only its own deployment, and its records are of the model its credential names.
        record = feedback_record(iris_model[1], ["a", "b"])
        feed = M.IngestFeedbackRequest(deployment_id=deployment_id, model_name="iris", records=[record])
        for token in ("token-alpha", "token-beta", identities.token(MONITOR)):
            with pytest.raises(grpc.RpcError) as refused:
                _feed(address, token, feed)
            assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
        betas_runtime = identities.minted(RUNTIME, beta_deployment, "iris-b:1")
        with pytest.raises(grpc.RpcError) as elsewhere:
            _feed(address, betas_runtime, feed)
        assert elsewhere.value.code() == grpc.StatusCode.NOT_FOUND
        # A runtime of beta's deployment that names alpha's model reads beta's model's statistics.
        claim = M.IngestFeedbackRequest(deployment_id=beta_deployment, model_name="iris", records=[record])
        assert _feed(address, betas_runtime, claim).accepted_rows == 2
        assert monitor.deployments.known(beta_deployment).context.name == "iris-b"  # not alpha's "iris"
        stray = M.IngestFeedbackRequest(deployment_id=beta_deployment, records=[M.InferenceRecord()])
        stray.records[0].CopyFrom(record)
        stray.records[0].model_version = 7
        with pytest.raises(grpc.RpcError) as wrong_version:
            _feed(address, betas_runtime, stray)
        assert wrong_version.value.code() == grpc.StatusCode.INVALID_ARGUMENT

        with grpc.insecure_channel(address) as channel:
            stub = monitor_pb2_grpc.MonitorServiceStub(channel)
            with pytest.raises(grpc.RpcError) as anonymous:
                stub.GetPolicy(M.GetPolicyRequest(deployment_id=deployment_id))
            assert anonymous.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_a_lease_holder_reads_the_monitoring_but_does_not_change_the_policy(parts, start_monitor, identities):
    scheduler_address = f"127.0.0.1:{parts.start(server=identities.server()).server.port}"
    monitor = start_monitor(parts.registry_address, scheduler_address, identities.server(), identities.token(MONITOR))
    address = f"127.0.0.1:{monitor.server.port}"
    with (
        SchedulerClient(scheduler_address, "token-alpha") as alpha,
        SchedulerClient(scheduler_address, "token-beta") as beta,
    ):
        deployment_id = alpha.wait_ready(alpha.deploy("iris").id).id
        assert beta.deploy("iris").id == deployment_id
    with MonitorClient(address, "token-alpha") as owner, MonitorClient(address, "token-beta") as holder:
        owner.set_policy(deployment_id, M.MonitorPolicy(window_size=64, auto_retrain=True))
        assert holder.policy(deployment_id).auto_retrain
        with pytest.raises(errors.PermissionDenied, match="only the owner"):
            holder.set_policy(deployment_id, M.MonitorPolicy(auto_retrain=False))
        assert owner.policy(deployment_id).auto_retrain


def test_a_federation_is_its_owners_whatever_another_tenant_names_its_own(parts, start_monitor, identities):
    """Beta naming alpha's federation puts beta's deployment in beta's federation of that name,
    never in alpha's: a federated round of alpha's would otherwise fit beta's data and roll its
    average out to beta."""
    scheduler_address = f"127.0.0.1:{parts.start(server=identities.server()).server.port}"
    monitor = start_monitor(parts.registry_address, scheduler_address, identities.server(), identities.token(MONITOR))
    address = f"127.0.0.1:{monitor.server.port}"
    together = M.MonitorPolicy(federation="hospitals")
    found = {}
    for tenant in ("alpha", "beta"):
        with SchedulerClient(scheduler_address, f"token-{tenant}") as scheduler:
            found[tenant] = scheduler.wait_ready(scheduler.deploy("iris", strict_node="node-a").id).id
        with MonitorClient(address, f"token-{tenant}") as client:
            assert client.set_policy(found[tenant], together).federation == "hospitals"
    assert monitor.store.federation_members(found["alpha"]) == [found["alpha"]]
    assert monitor.store.federation_members(found["beta"]) == [found["beta"]]
    with MonitorClient(address, "token-alpha") as alpha:
        with pytest.raises(errors.InvalidArgument, match=r"policy\.federation must be"):
            alpha.set_policy(found["alpha"], M.MonitorPolicy(federation="no spaces"))
        assert alpha.set_policy(found["alpha"], M.MonitorPolicy(federation="-")).federation == ""
    assert monitor.store.federation_members(found["alpha"]) == []
    with SchedulerClient(scheduler_address, "token-alpha") as scheduler:
        open_one = scheduler.deploy("iris").id  # placed or not (the nodes are full), its record is OPEN
    # no feedback yet: the scheduler says OPEN
    with MonitorClient(address, "token-alpha") as alpha, pytest.raises(errors.FailedPrecondition, match="is OPEN"):
        alpha.set_policy(open_one, together)
    assert monitor.store.federation_members(open_one) == []
