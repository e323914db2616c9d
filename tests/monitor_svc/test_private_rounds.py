"""A STRICT deployment retrained with differential privacy on real parts: each round's epsilon
charged where it starts, shown in the lineage, and no round past the budget."""

from __future__ import annotations

import time

import numpy as np
import pytest

from mlaas.client import MonitorClient, RegistryClient, SchedulerClient
from mlaas.errors import InvalidArgument
from mlaas.inference_client import DeploymentInference
from mlaas.v1 import monitor_pb2 as M
from tests.monitor_svc.loops import FINAL, label_on_node, monitor_and_scheduler

pytestmark = pytest.mark.spawns  # see pyproject.toml


def test_private_retraining_spends_from_the_deployments_ledger_and_stops_at_its_budget(parts, start_monitor):
    """With privacy_epsilon in the policy, a STRICT round fits with differential privacy; its
    epsilon is charged by the scheduler as it accepts the round (by the terms the policy set
    there), shown on the retraining and in the new version's lineage, and once another round
    would go past the budget none is started, however many labels come, and the report says why."""
    monitor_server, scheduler_address = monitor_and_scheduler(parts, start_monitor)
    rng = np.random.default_rng(12)
    with (
        SchedulerClient(scheduler_address) as schedulers,
        MonitorClient(f"127.0.0.1:{monitor_server.server.port}") as monitor,
    ):
        deployment = schedulers.wait_ready(schedulers.deploy("sea", strict_node="node-a").id)
        policy = M.MonitorPolicy(challenger_confidence=0.5, privacy_epsilon=40.0, privacy_budget=60.0)
        assert monitor.set_policy(deployment.id, policy).privacy_budget == 60.0
        with pytest.raises(InvalidArgument, match=r"privacy_budget .* must be at least privacy_epsilon"):
            monitor.set_policy(deployment.id, M.MonitorPolicy(privacy_budget=10.0))
        with DeploymentInference(schedulers, deployment.id) as runtime:
            label_on_node(runtime, 0, "before", 2_000, rng)
            label_on_node(runtime, 3, "after", 1_500, rng)
            for retraining in monitor.watch_retraining(deployment.id):
                if retraining.state in FINAL:
                    break
            assert retraining.state != M.RETRAINING_STATE_FAILED, retraining.reason
            assert retraining.epsilon_spent == pytest.approx(40.0) and retraining.trained_on == "node-a"
            serving = schedulers.wait_settled(deployment.id).model.version
            before = monitor.report(deployment.id)
            counted = before.labels_seen if before.model_version == serving else 0  # a rollout counts afresh
            label_on_node(runtime, 3, "later", 1_500, rng)  # enough for the next round
        deadline = time.monotonic() + 60
        while (report := monitor.report(deployment.id)).model_version != serving or report.labels_seen < counted + 1e3:
            assert time.monotonic() < deadline, report
            time.sleep(0.3)
        retrainings = monitor.retrainings(deployment.id)
    assert [r.id for r in retrainings] == [retraining.id]
    assert report.retraining_unavailable_reason.startswith("privacy budget: 40 of 60 spent, and a round spends 40")
    with SchedulerClient(scheduler_address) as schedulers:  # charged where rounds start
        assert schedulers.get(deployment.id).privacy.spent == pytest.approx(40.0)
    if retraining.state == M.RETRAINING_STATE_ROLLED_OUT:
        with RegistryClient(parts.registry_address) as registry:
            lineage = registry.get(f"sea:{retraining.challenger_version}").description.lineage
        assert lineage.epsilon == pytest.approx(40.0) and lineage.trained_on == "node-a"
