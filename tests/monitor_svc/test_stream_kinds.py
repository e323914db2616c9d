"""Watches never take the Monitor's feedback and labels away: with every WatchDrift stream held
by lease holders, a runtime's IngestFeedback and the owner's ReportLabels are still taken (each
streaming rpc has slots of its own), and one more watch is refused with the reason. A watch ends
when its caller's lease does. Real scheduler, registry, Redis and runtime process."""

from __future__ import annotations

import time

import grpc
import pytest

from mlaas.client import MonitorClient, SchedulerClient
from mlaas.services.auth import MONITOR, RUNTIME
from mlaas.v1 import monitor_pb2 as M
from mlaas.v1 import monitor_pb2_grpc
from tests.conftest import feedback_record

WATCH = "/mlaas.v1.MonitorService/WatchDrift"


def test_held_watches_leave_feedback_and_labels_their_own_slots(parts, start_monitor, identities, iris_model):
    scheduler_address = f"127.0.0.1:{parts.start(server=identities.server()).server.port}"
    monitor = start_monitor(
        parts.registry_address, scheduler_address, identities.server(max_streams=2, max_streams_per_caller=2),
        identities.token(MONITOR),
    )  # fmt: skip
    address = f"127.0.0.1:{monitor.server.port}"
    with (
        SchedulerClient(scheduler_address, "token-alpha") as alpha,
        SchedulerClient(scheduler_address, "token-beta") as beta,
    ):
        deployment_id = alpha.wait_ready(alpha.deploy("iris").id).id
        assert beta.deploy("iris").id == deployment_id  # beta holds a lease on alpha's deployment

    with grpc.insecure_channel(address) as channel:
        stub = monitor_pb2_grpc.MonitorServiceStub(channel)

        def watch(tenant: str):
            return stub.WatchDrift(M.WatchDriftRequest(deployment_id=deployment_id),
                                   metadata=[("authorization", f"Bearer token-{tenant}")], timeout=120)  # fmt: skip

        watches = []
        for tenant in ("alpha", "beta"):
            watches.append(watch(tenant))
            deadline = time.monotonic() + 30
            while monitor.server.streams.open(WATCH) < len(watches):
                assert time.monotonic() < deadline, "the watch was never counted"
                time.sleep(0.01)
        with pytest.raises(grpc.RpcError) as refused:
            next(watch("alpha"))
        assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "all 2 WatchDrift streams here are open" in refused.value.details()

        record = feedback_record(iris_model[1], ["r1", "r2"])
        runtime = identities.minted(RUNTIME, deployment_id, "iris:1")
        fed = stub.IngestFeedback(
            iter([M.IngestFeedbackRequest(deployment_id=deployment_id, records=[record])]),
            metadata=[("authorization", f"Bearer {runtime}")], timeout=30,
        )  # fmt: skip
        assert fed.accepted_rows == 2
        with MonitorClient(address, "token-alpha") as owner:
            owner.report_labels(deployment_id, [("r1", "0"), ("r2", "1")], retry_seconds=0)
        assert monitor.store.label_count(deployment_id)[0] == 2
        assert all(w.running() for w in watches)  # the watches were never cut to make room

        with SchedulerClient(scheduler_address, "token-beta") as beta:
            beta.decommission(deployment_id)  # beta's lease goes, and with it beta's watch
        with pytest.raises(grpc.RpcError) as ended:
            next(watches[1])
        assert ended.value.code() == grpc.StatusCode.NOT_FOUND
        assert watches[0].running()  # the owner's goes on
        watches[0].cancel()
