"""A federation of STRICT deployments retrained together on real parts: every site fits on its node,
only parameters and counts leave it, and the better average rolls out to all."""

from __future__ import annotations

import contextlib
import time

import numpy as np
import pytest

from mlaas.client import MonitorClient, RegistryClient, SchedulerClient
from mlaas.errors import NotFound
from mlaas.inference_client import DeploymentInference
from mlaas.v1 import monitor_pb2 as M
from scheduler_svc.settings import parse_nodes
from tests.monitor_svc.loops import ended_itself, label_on_node, monitor_and_scheduler

pytestmark = pytest.mark.spawns  # see pyproject.toml


def test_a_federation_of_two_sites_retrains_together_and_rolls_out_to_both(parts, start_monitor):
    """Two STRICT deployments of SEA on two nodes in one federation: the concept changes at both;
    a round fits at each site, averages only their parameters, judges the average at each site
    on its own held-out labels, and rolls the new version out to both. A site takes part once the
    Monitor has counted enough of its labels, and counts come from each node when it sends them:
    so node-b (which starts no round itself) has all its labels counted before node-a's change,
    whatever the machine's load."""
    monitor_server, scheduler_address = monitor_and_scheduler(
        parts, start_monitor, nodes=parse_nodes("node-a:cpu=2,memory=4Gi;node-b:cpu=2,memory=4Gi")
    )
    rng = np.random.default_rng(13)
    with (
        SchedulerClient(scheduler_address) as schedulers,
        MonitorClient(f"127.0.0.1:{monitor_server.server.port}") as monitor,
    ):
        sites = {
            node: schedulers.wait_ready(schedulers.deploy("sea", strict_node=node).id) for node in ("node-a", "node-b")
        }
        for node, deployment in sites.items():
            policy = monitor.set_policy(deployment.id, M.MonitorPolicy(
                challenger_confidence=0.5, federation="sea-sites", auto_retrain=node == "node-a",
            ))  # fmt: skip
            assert policy.federation == "sea-sites"
        runtimes = {node: DeploymentInference(schedulers, d.id) for node, d in sites.items()}
        for node, runtime in runtimes.items():
            label_on_node(runtime, 0, f"{node}-before", 1_000, rng)
        for part in range(3):  # the change at node-b, every label of it counted by the Monitor
            label_on_node(runtimes["node-b"], 3, f"node-b-after-{part}", 500, rng)
        deadline, counted = time.monotonic() + 120, 0
        # node-b's own 1,000 labels before the change and at least min_labels (500) after it
        while counted < 2_000:
            assert time.monotonic() < deadline, counted
            time.sleep(0.2)
            with contextlib.suppress(NotFound):  # its first counts are on their way
                counted = monitor.report(sites["node-b"].id).labels_seen
        for part in range(3):  # then at node-a, whose round takes node-b in
            label_on_node(runtimes["node-a"], 3, f"node-a-after-{part}", 500, rng)
        deadline = time.monotonic() + 120
        while not (done := [r for d in sites.values() for r in monitor.retrainings(d.id) if ended_itself(r)]):
            assert time.monotonic() < deadline, [monitor.retrainings(d.id) for d in sites.values()]
            time.sleep(0.5)
        federated = done[0]
        versions = {node: schedulers.wait_settled(d.id).model.version for node, d in sites.items()}
        for runtime in runtimes.values():
            runtime.close()
    assert federated.state == M.RETRAINING_STATE_ROLLED_OUT, federated.reason
    assert sorted(federated.federated_deployments) == sorted(d.id for d in sites.values())
    assert federated.trained_on.startswith("federation sea-sites (") and "node-a" in federated.trained_on
    assert "node-b" in federated.trained_on and "pooled from 2 sites" in federated.reason
    assert versions == {"node-a": federated.challenger_version, "node-b": federated.challenger_version}
    with RegistryClient(parts.registry_address) as registry:
        lineage = registry.get(f"sea:{federated.challenger_version}").description.lineage
    assert lineage.trained_on == federated.trained_on and lineage.training_rows == federated.training_samples
