"""Tenancy on the Monitor: with a tokens file, a tenant feeds and reads only the monitoring of
deployments the scheduler shows it (its own, or ones it holds a lease on); the mesh's own
identity (the runtimes' feedback) reaches every deployment. Real scheduler, registry, Redis and
runtime process; the Monitor asks the scheduler with the caller's token."""

from __future__ import annotations

import grpc
import pytest

from mlaas import errors
from mlaas.auth import MESH_TENANT
from mlaas.client import MonitorClient, SchedulerClient
from mlaas.settings import ServerSettings
from mlaas.tensors import to_raw
from mlaas.v1 import monitor_pb2 as M
from mlaas.v1 import monitor_pb2_grpc


def test_a_tenant_reaches_only_the_monitoring_of_deployments_it_can_see(parts, start_monitor, tmp_path, iris_model):
    tokens = tmp_path / "tokens.yaml"
    tokens.write_text(f"token-alpha: alpha\ntoken-beta: beta\ntoken-mesh: {MESH_TENANT}\n")
    server = ServerSettings(port=0, metrics_port=-1, shutdown_grace_seconds=2, auth_tokens_file=str(tokens))
    scheduler_address = f"127.0.0.1:{parts.start(server=server).server.port}"
    monitor = start_monitor(parts.registry_address, scheduler_address, tokens)
    address = f"127.0.0.1:{monitor.server.port}"
    with SchedulerClient(scheduler_address, "token-alpha") as owner:
        deployment_id = owner.wait_ready(owner.deploy("iris").id).id
    strict = M.MonitorPolicy(window_size=64, expected_run_length=5000)

    with (
        MonitorClient(address, "token-alpha") as alpha,
        MonitorClient(address, "token-beta") as beta,
        MonitorClient(address, "token-mesh") as mesh,
    ):
        assert alpha.set_policy(deployment_id, strict).window_size == 64
        assert alpha.retrainings(deployment_id) == []

        for call in (
            lambda: beta.set_policy(deployment_id, M.MonitorPolicy(window_size=8)),
            lambda: beta.policy(deployment_id),
            lambda: beta.retrainings(deployment_id),
            lambda: beta.report(deployment_id),
            lambda: next(iter(beta.watch_drift(deployment_id))),
            lambda: beta.report_labels(deployment_id, [("r1", "0")]),
        ):
            with pytest.raises(errors.NotFound, match=f"deployment '{deployment_id}' not found"):
                call()
        assert alpha.policy(deployment_id).window_size == 64  # beta's policy never landed
        assert monitor.store.label_count(deployment_id) == (0, 0)  # nor its label

        # Feedback: another tenant cannot poison a deployment's detectors; the mesh reaches it.
        _, X, _ = iris_model
        datatype, raw = to_raw(X[:2])
        record = M.InferenceRecord(
            request_ids=["a", "b"], model_version=1, inputs=[M.RawTensor(datatype=datatype, shape=[2, 4], data=raw)]
        )
        with grpc.insecure_channel(address) as channel:
            stub = monitor_pb2_grpc.MonitorServiceStub(channel)
            feed = M.IngestFeedbackRequest(deployment_id=deployment_id, model_name="iris", records=[record])
            with pytest.raises(grpc.RpcError) as refused:
                stub.IngestFeedback(iter([feed]), metadata=[("authorization", "Bearer token-beta")])
            assert refused.value.code() == grpc.StatusCode.NOT_FOUND
            with pytest.raises(grpc.RpcError) as anonymous:
                stub.GetPolicy(M.GetPolicyRequest(deployment_id=deployment_id))
            assert anonymous.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert mesh.policy(deployment_id).window_size == 64
