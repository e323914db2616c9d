"""Scale to zero on real runtimes: an autoscaled deployment with min_replicas 0 gives its replica
back after a scale-down window without requests, and its next request is held, not refused:
through the SDK (ActivateDeployment) and through the scheduler's activator for an unmodified
tritonclient and for curl, several first requests at once making one activation and none lost.
Only whoever may use the deployment wakes it. The decisions themselves are test_autoscaling.py's."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest

from mlaas import errors
from mlaas.client import SchedulerClient
from mlaas.inference_client import DeploymentInference
from mlaas.v1 import scheduler_pb2
from scheduler_svc.activation import CallSlots
from scheduler_svc.app import Scheduler
from tests.conftest import tool_env

S = scheduler_pb2
pytestmark = pytest.mark.spawns
CLIENTS = Path(__file__).parent / "clients"
ACTIVATED = "activated from zero to 1 replica(s) by a request"


def policy(window: float) -> S.AutoscalingPolicy:
    return S.AutoscalingPolicy(min_replicas=0, max_replicas=2, target_inflight=4, scale_down_window_seconds=window)


def event_details(scheduler: Scheduler, deployment_id: str) -> list[str]:
    """The details of the deployment's events so far, from the scheduler's store."""
    return [event.detail for _, event in scheduler.store.events(deployment_id)]


def wait_at_zero(
    client: SchedulerClient, scheduler: Scheduler, deployment_id: str, seconds: float = 60
) -> S.Deployment:
    """The deployment once it is READY with no replica."""
    deadline = time.monotonic() + seconds
    while True:
        deployment = client.get(deployment_id)
        if deployment.state == S.DEPLOYMENT_STATE_READY and deployment.replicas == 0:
            return deployment
        assert time.monotonic() < deadline, event_details(scheduler, deployment_id)
        time.sleep(0.1)


INFER_BODY = json.dumps(
    {
        "inputs": [
            {"name": "X", "datatype": "FP32", "shape": [2, 4], "data": [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]}
        ]
    }
)


def curl(activator: str, path: str, deployment_id: str, body: str, token: str = "") -> dict:
    """curl's answer (JSON) to a POST through the HTTP activator, naming the deployment if given."""
    command = ["curl", "-s", "--max-time", "120", "-X", "POST", f"http://{activator}{path}", "-d", body]
    if deployment_id:
        command += ["-H", f"mlaas-deployment: {deployment_id}"]
    if token:
        command += ["-H", f"authorization: Bearer {token}"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=150)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def allocated_cpu(scheduler: SchedulerClient) -> int:
    return sum(node.allocated.cpu_millicores for node in scheduler.nodes())


def test_an_idle_deployment_gives_its_replica_back_and_the_sdk_wakes_it_with_its_next_request(parts, iris_model):
    _, X, _ = iris_model
    started = parts.start(autoscale_interval_seconds=0.3)
    address = f"127.0.0.1:{started.server.port}"
    with SchedulerClient(address) as scheduler:
        deployment = scheduler.wait_ready(scheduler.deploy("iris", autoscaling=policy(2)).id)
        assert len(deployment.endpoints) == 1 and deployment.replicas == 1
        assert deployment.activator_endpoint == f"127.0.0.1:{started.activator.grpc.port}"
        with DeploymentInference(scheduler, deployment.id) as runtime:
            assert runtime.infer({"X": X[:3]})["label"].shape == (3,)

            zero = wait_at_zero(scheduler, started, deployment.id)
            assert not zero.endpoints and not zero.replica_status and allocated_cpu(scheduler) == 0
            # The same client, whose replica is gone: its next call is held while one starts.
            assert runtime.infer({"X": X[:5]})["label"].shape == (5,)
        history = event_details(started, deployment.id)
        assert "autoscaling from 1 to 0 replica(s): no request for 2 s" in history, history
        assert history.count(ACTIVATED) == 1, history
        assert scheduler.get(deployment.id).replicas == 1

        # The woken replica stays a whole window after it serves, although its one request was
        # answered at once: the window starts again when the replicas go up.
        wait_at_zero(scheduler, started, deployment.id)
        events = [event for _, event in started.store.events(deployment.id)]
        woken = max(i for i, e in enumerate(events) if e.detail == ACTIVATED)
        served = next(e for e in events[woken:] if e.state == S.DEPLOYMENT_STATE_READY)
        gone = next(e for e in events[woken:] if e.detail.startswith("autoscaling from 1 to 0"))
        assert gone.time.ToNanoseconds() - served.time.ToNanoseconds() >= 2e9, (served, gone)

        # Twelve application threads at once, each with its own client (more than the scheduler
        # holds waits for one caller): every one answered, after one activation.
        def first_answer(_: int) -> tuple[int, ...]:
            with DeploymentInference(scheduler, deployment.id) as runtime:
                return runtime.infer({"X": X[:2]})["label"].shape

        with ThreadPoolExecutor(12) as pool:
            assert list(pool.map(first_answer, range(12))) == [(2,)] * 12
        assert event_details(started, deployment.id).count(ACTIVATED) == 2

        # Turning autoscaling off at zero leaves it one replica, not none forever.
        wait_at_zero(scheduler, started, deployment.id)
        assert scheduler.set_autoscaling(deployment.id, None).replicas == 1
        assert len(scheduler.wait_settled(deployment.id).endpoints) == 1


def test_plain_grpc_clients_wake_a_deployment_through_the_activator_and_none_is_lost(parts):
    started = parts.start(autoscale_interval_seconds=0.3)
    with SchedulerClient(f"127.0.0.1:{started.server.port}") as scheduler:
        deployment = scheduler.wait_ready(scheduler.deploy("iris", autoscaling=policy(1)).id)
        wait_at_zero(scheduler, started, deployment.id)
        check = subprocess.run(
            [sys.executable, str(CLIENTS / "triton_activator_check.py"), deployment.activator_endpoint, deployment.id,
             "-", "6"],
            capture_output=True, text=True, env=tool_env(), timeout=240,
        )  # fmt: skip
        assert check.returncode == 0 and check.stdout.strip() == "ok 26", check.stdout + check.stderr
        history = event_details(started, deployment.id)
        assert history.count(ACTIVATED) == 1, history  # six first requests, one activation

        # curl, over HTTP, once it is at zero again.
        wait_at_zero(scheduler, started, deployment.id)
        assert deployment.activator_http_endpoint == f"127.0.0.1:{started.activator.http.port}"
        answer = curl(deployment.activator_http_endpoint, "/v2/models/iris/infer", deployment.id, INFER_BODY)
        assert answer["model_name"] == "iris" and answer["outputs"][0]["data"] == [0, 2], answer
        assert event_details(started, deployment.id).count(ACTIVATED) == 2
        refused = curl(deployment.activator_http_endpoint, "/v2/models/iris/infer", "", INFER_BODY)
        assert "mlaas-deployment" in refused["error"], refused

        # A deployment that does not exist, and an rpc the runtimes do not serve.
        with grpc.insecure_channel(deployment.activator_endpoint) as channel:
            infer = channel.unary_unary("/inference.GRPCInferenceService/ModelInfer")
            with pytest.raises(grpc.RpcError) as missing:
                infer(b"", metadata=[("mlaas-deployment", "d-nothing")], timeout=10)
            assert missing.value.code() == grpc.StatusCode.NOT_FOUND
            with pytest.raises(grpc.RpcError) as other:
                channel.unary_unary("/mlaas.v1.RuntimeService/GetLoad")(b"", timeout=10)
            assert other.value.code() == grpc.StatusCode.UNIMPLEMENTED


def test_only_who_may_use_a_deployment_wakes_it(parts, identities):
    started = parts.start(server=identities.server(), autoscale_interval_seconds=0.3)
    address = f"127.0.0.1:{started.server.port}"
    with (
        SchedulerClient(address, identities.token("alpha")) as alpha,
        SchedulerClient(address, identities.token("beta")) as beta,
    ):
        deployment = alpha.wait_ready(alpha.deploy("iris", autoscaling=policy(1)).id)
        wait_at_zero(alpha, started, deployment.id)
        with pytest.raises(errors.NotFound):
            beta.activate(deployment.id, timeout=10)
        for other_key in (f"{deployment.id}:events", f"{deployment.id}:leases"):  # no oracle of what exists
            with pytest.raises(errors.NotFound):
                beta.activate(other_key, timeout=10)
            with pytest.raises(errors.NotFound):
                beta.get(other_key)
        with grpc.insecure_channel(deployment.activator_endpoint) as channel:
            infer = channel.unary_unary("/inference.GRPCInferenceService/ModelInfer")
            for metadata, code in (
                ([("authorization", f"Bearer {identities.token('beta')}")], grpc.StatusCode.NOT_FOUND),
                ([], grpc.StatusCode.UNAUTHENTICATED),
                ([("authorization", "Bearer not-a-token")], grpc.StatusCode.UNAUTHENTICATED),
                # Two tokens: the one checked would not be the one the replica reads.
                (
                    [
                        ("authorization", f"Bearer {identities.token('beta')}"),
                        ("authorization", f"Bearer {identities.token('alpha')}"),
                    ],
                    grpc.StatusCode.INVALID_ARGUMENT,
                ),
            ):
                with pytest.raises(grpc.RpcError) as refused:
                    infer(b"", metadata=[("mlaas-deployment", deployment.id), *metadata], timeout=10)
                assert refused.value.code() == code, refused.value.details()
        beta_says = curl(deployment.activator_http_endpoint, "/v2/models/iris/infer", deployment.id, INFER_BODY,
                         identities.token("beta"))  # fmt: skip
        assert beta_says == {"error": f"deployment {deployment.id!r} not found"}
        nobody_says = curl(deployment.activator_http_endpoint, "/v2/models/iris/infer", deployment.id, INFER_BODY)
        assert "authorization" in nobody_says["error"], nobody_says
        assert alpha.get(deployment.id).replicas == 0  # none of them woke it
        check = subprocess.run(
            [sys.executable, str(CLIENTS / "triton_activator_check.py"), deployment.activator_endpoint, deployment.id,
             identities.token("alpha"), "2"],
            capture_output=True, text=True, env=tool_env(), timeout=240,
        )  # fmt: skip
        assert check.returncode == 0 and check.stdout.strip() == "ok 22", check.stdout + check.stderr
        answer = curl(deployment.activator_http_endpoint, "/v2/models/iris/infer", deployment.id, INFER_BODY,
                      identities.token("alpha"))  # fmt: skip
        assert answer["outputs"][0]["data"] == [0, 2], answer


def test_the_activator_holds_a_bounded_number_of_calls_and_one_tenant_never_all_of_them():
    slots = CallSlots(total=3, per_caller=2, what="activator calls")
    slots.take("alpha")
    slots.take("alpha")
    with pytest.raises(errors.ResourceExhausted, match="2 activator calls of yours are held already"):
        slots.take("alpha")
    slots.take("beta")  # alpha's burst left beta its share
    with pytest.raises(errors.ResourceExhausted, match="3 activator calls are held already"):
        slots.take("gamma")
    slots.give_back("alpha")
    slots.take("gamma")
