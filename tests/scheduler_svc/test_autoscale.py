"""Autoscaling on real runtimes: a step in load adds a replica, which then takes its share of
the SDK's calls; when the load stops, the replica goes after the scale-down window; no request
fails meanwhile, and each change is in the deployment's events with its reason. The decisions
themselves, flapping loads included, are test_autoscaling.py's."""

from __future__ import annotations

import subprocess
import sys
import threading
import time

import grpc
import numpy as np
import pytest

from mlaas.client import SchedulerClient
from mlaas.inference_client import DeploymentInference
from mlaas.v1 import runtime_pb2, runtime_pb2_grpc, scheduler_pb2
from tests.conftest import tool_env
from tests.scheduler_svc.conftest import stub_of, watch_until

S = scheduler_pb2
pytestmark = pytest.mark.spawns


def answered_by(endpoint: str) -> int:
    with grpc.insecure_channel(endpoint) as channel:
        return runtime_pb2_grpc.RuntimeServiceStub(channel).GetLoad(runtime_pb2.GetLoadRequest(), timeout=10).answered


def wait_for(scheduler: SchedulerClient, deployment_id: str, replicas: int, seconds: float = 90) -> S.Deployment:
    """The deployment once it is READY with `replicas` serving replicas."""
    deadline = time.monotonic() + seconds
    while True:
        deployment = scheduler.get(deployment_id)
        if deployment.state == S.DEPLOYMENT_STATE_READY and len(deployment.endpoints) == replicas:
            return deployment
        assert time.monotonic() < deadline, (deployment.replicas, [e.detail for e in scheduler.events(deployment_id)])
        time.sleep(0.1)


def test_a_step_in_load_adds_a_replica_and_it_goes_once_the_load_stops(parts, iris_model):
    _, X, _ = iris_model
    scheduler_process = parts.start(autoscale_interval_seconds=0.5)
    address = f"127.0.0.1:{scheduler_process.server.port}"
    # Big requests (the runtime spends milliseconds on each), so that four callers keep more
    # than one request in flight at the runtime however busy the machine is.
    rows = np.repeat(X, 20, axis=0).astype(np.float32)
    policy = S.AutoscalingPolicy(min_replicas=1, max_replicas=2, target_inflight=0.5, scale_down_window_seconds=3)
    with SchedulerClient(address) as scheduler:
        deployment = scheduler.deploy("iris", autoscaling=policy)
        assert (deployment.replicas, deployment.autoscaling) == (1, policy)
        deployment = scheduler.wait_ready(deployment.id)
        stop, failures, answered = threading.Event(), [], [0]

        def call() -> None:
            with DeploymentInference(scheduler, deployment.id, refresh_seconds=0.5) as runtime:
                while not stop.is_set():
                    try:
                        assert runtime.infer({"X": rows})["label"].shape == (len(rows),)
                        answered[0] += 1
                    except Exception as err:  # every failure counts, whatever it is
                        failures.append(repr(err))

        callers = [threading.Thread(target=call) for _ in range(4)]
        for caller in callers:
            caller.start()
        try:
            scaled = wait_for(scheduler, deployment.id, 2)
            # The new replica takes calls too: the SDK asks for the endpoints again.
            new = next(r for r in scaled.replica_status if r.endpoint not in deployment.endpoints)
            deadline = time.monotonic() + 30
            while answered_by(new.endpoint) == 0:
                assert time.monotonic() < deadline, "no call reached the added replica"
                time.sleep(0.1)
        finally:
            stop.set()
            for caller in callers:
                caller.join()
        assert failures == [] and answered[0] > 0
        wait_for(scheduler, deployment.id, 1)
        with grpc.insecure_channel(address) as channel:
            events = watch_until(stub_of(channel), deployment.id, {S.DEPLOYMENT_STATE_UPDATING}, "from 2 to 1")
        history = [e.event.detail for e in events]
        up = [d for d in history if d.startswith("autoscaling from 1 to 2 replica(s): ")]
        assert len(up) == 1 and "requests in flight per replica, target 0.5" in up[0], history
        assert history[-1].startswith("autoscaling from 2 to 1 replica(s): "), history

        listing = subprocess.run(
            [sys.executable, "-m", "mlaas.cli", "deployments", "--scheduler", address],
            capture_output=True, text=True, env=tool_env(), timeout=60,
        )  # fmt: skip
        assert listing.returncode == 0, listing.stderr
        assert "1 (1-2)" in next(line for line in listing.stdout.splitlines() if deployment.id in line)
