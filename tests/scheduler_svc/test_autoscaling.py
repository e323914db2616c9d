"""The autoscaler's decisions, without I/O (scheduler_svc/autoscaling.py and autoscaler.py with
readings made up here): the policy's checks, the load read from two readings, the
recommendation for each target, and the stabilisation that keeps a flapping load from making
replicas flap. The same loop on real runtimes is test_autoscale.py."""

from __future__ import annotations

import math

import pytest
from prometheus_client import CollectorRegistry

from mlaas.errors import InvalidArgument
from mlaas.v1 import runtime_pb2, scheduler_pb2
from scheduler_svc.autoscaler import Autoscaler
from scheduler_svc.autoscaling import Load, Stabiliser, check_policy, interval_load, recommend

S = scheduler_pb2
BOUNDS = (0.001, 0.01, 0.1, 1.0)


def policy(**fields) -> S.AutoscalingPolicy:
    return S.AutoscalingPolicy(**{"min_replicas": 1, "max_replicas": 4, "target_inflight": 2.0, **fields})


@pytest.mark.parametrize(
    "fields, says",
    [
        ({"min_replicas": -2}, "min_replicas must be at least 0"),
        ({"min_replicas": 0, "max_replicas": 0}, "max_replicas must be at least 1"),
        ({"min_replicas": 3, "max_replicas": 2}, "max_replicas must be between min_replicas and 64"),
        ({"max_replicas": 65}, "max_replicas must be between min_replicas and 64"),
        ({"target_inflight": 0.0}, "exactly one target"),
        ({"target_p99_ms": 50.0}, "exactly one target"),
        ({"target_inflight": math.nan}, "target_inflight must be a number between 0.01 and 1e"),
        ({"target_inflight": -1.0}, "target_inflight must be a number between 0.01 and 1e"),
        ({"target_inflight": math.inf}, "target_inflight must be a number between 0.01 and 1e"),
        ({"target_inflight": 1e-310}, "target_inflight must be a number between 0.01 and 1e"),
        ({"target_inflight": 0.0, "target_p99_ms": 1e-320}, "target_p99_ms must be a number between 0.1 and"),
        ({"min_replicas": 5, "max_replicas": 8}, "min_replicas must be at most 4, the replicas one tenant"),
        ({"scale_down_window_seconds": -1.0}, "scale_down_window_seconds must be 0 .60 s. or between 1 and 3600"),
        ({"scale_down_window_seconds": math.nan}, "scale_down_window_seconds must be 0 .60 s. or between 1 and"),
        ({"scale_down_window_seconds": 1e-9}, "scale_down_window_seconds must be 0 .60 s. or between 1 and 3600"),
    ],
)
def test_a_policy_that_cannot_be_followed_is_refused_with_what_is_wrong(fields, says):
    with pytest.raises(InvalidArgument, match=says):
        check_policy(policy(**fields), 64, tenant_cap=4)


def test_a_sound_policy_passes():
    check_policy(policy(), 64)
    check_policy(policy(min_replicas=0, max_replicas=1), 64)
    check_policy(policy(target_inflight=0.0, target_p99_ms=20.0, scale_down_window_seconds=5.0), 64)


def reading(answered: int, busy: float, in_flight: int = 0, counts=(0, 0, 0, 0, 0)) -> runtime_pb2.GetLoadResponse:
    return runtime_pb2.GetLoadResponse(
        in_flight=in_flight, answered=answered, busy_seconds=busy, latency_bounds_seconds=BOUNDS,
        latency_counts=list(counts),
    )  # fmt: skip


def test_the_load_between_two_readings_is_the_mean_in_flight_and_the_latencies_of_what_was_answered():
    # Two replicas over 2 s: 3 and 1 request-seconds spent, so 2 requests in flight on average.
    pairs = [
        (reading(10, 5.0, counts=(5, 5, 0, 0, 0)), reading(110, 8.0, counts=(5, 55, 50, 0, 0))),
        (reading(0, 0.0), reading(20, 1.0, counts=(0, 19, 1, 0, 0))),
    ]
    load = interval_load(pairs, 2.0)
    assert load.in_flight == pytest.approx(2.0)
    assert load.latency_counts == (0, 69, 51, 0, 0)
    assert load.p99_seconds() == 0.1
    # A replica that restarted between the readings, or that says what cannot be, is left out.
    assert interval_load([(reading(50, 9.0), reading(3, 0.1))], 1.0).in_flight == 0
    assert interval_load([(reading(5, 1.0), reading(6, math.inf))], 1.0).in_flight == 0
    assert interval_load([(reading(5, 1.0), reading(6, math.nan))], 1.0).in_flight == 0
    assert Load(0.0, (0, 0), BOUNDS).p99_seconds() is None


def test_a_target_in_flight_asks_for_enough_replicas_within_the_bounds():
    assert recommend(policy(), 1, Load(5.0)) == 3  # 5 in flight at 2 each
    assert recommend(policy(), 3, Load(4.0)) == 2
    assert recommend(policy(), 2, Load(100.0)) == 4  # max
    assert recommend(policy(target_inflight=0.01), 2, Load(1e300)) == 4  # bounded before any rounding
    assert recommend(policy(min_replicas=2), 3, Load(0.0)) == 2  # min


def test_only_an_interval_without_any_request_wants_zero_replicas():
    to_zero = policy(min_replicas=0)
    assert recommend(to_zero, 1, Load(0.0, (0,) * 5, BOUNDS)) == 0
    # However light, traffic keeps one: a request answered, or one in flight.
    assert recommend(to_zero, 1, Load(1e-6, (0,) * 5, BOUNDS)) == 1
    assert recommend(to_zero, 1, Load(0.0, (1, 0, 0, 0, 0), BOUNDS)) == 1
    latency = policy(min_replicas=0, target_inflight=0.0, target_p99_ms=100.0)
    assert recommend(latency, 1, Load(0.001, (9, 0, 0, 0, 0), BOUNDS)) == 1  # far under the target, still used
    assert recommend(latency, 1, Load(0.0, (0,) * 5, BOUNDS)) == 0


def test_a_latency_target_adds_replicas_in_proportion_and_removes_one_when_well_under():
    latency = policy(target_inflight=0.0, target_p99_ms=10.0)

    def load(bucket: int) -> Load:
        counts = [0] * 5
        counts[bucket] = 100
        return Load(1.0, tuple(counts), BOUNDS)

    assert recommend(latency, 1, load(2)) == 4  # p99 100 ms is 10x the target: capped at max
    assert recommend(latency, 2, load(1)) == 2  # at the target
    assert recommend(latency, 2, load(0)) == 1  # 1 ms, well under
    assert recommend(latency, 2, Load(0.0, (0,) * 5, BOUNDS)) == 1  # idle
    assert recommend(latency, 2, Load(3.0, (0,) * 5, BOUNDS)) == 2  # nothing answered, requests held


def test_replicas_come_at_once_and_go_only_after_a_whole_window_that_wanted_fewer():
    stable = Stabiliser()
    assert stable.decide(0.0, 1, 3, window=10.0) == 3  # up at once
    assert stable.decide(1.0, 3, 1, window=10.0) == 3  # watched less than a window
    assert stable.decide(9.0, 3, 1, window=10.0) == 3
    # A flapping load: every few seconds a burst wants 3 again, so the window never wants fewer.
    for t in range(10, 40, 3):
        assert stable.decide(float(t), 3, 3 if t % 2 else 1, window=10.0) == 3
    # Quiet for a whole window: down to the most it wanted in it (each decision carried out).
    current = 3
    for t in range(41, 52):
        current = stable.decide(float(t), current, 2 if t < 45 else 1, window=10.0)
    assert current == 2
    for t in range(52, 64):
        current = stable.decide(float(t), current, 1, window=10.0)
    assert current == 1


def test_after_the_replicas_went_up_a_whole_window_passes_before_any_go():
    stable = Stabiliser()
    for t in range(0, 11):  # idle for a whole window at one replica: zero wanted at t=10
        wanted = stable.decide(float(t), 1, 0, window=10.0)
    assert wanted == 0
    # At zero nothing is decided, so the zero itself may never be seen: a request woke it as
    # soon as it got there. One replica again, and then idle at once: it stays a whole window.
    assert stable.decide(20.0, 1, 0, window=10.0) == 1
    assert stable.decide(29.0, 1, 0, window=10.0) == 1
    assert stable.decide(30.5, 1, 0, window=10.0) == 0


class Readings:
    """Stands for the LoadReader: each replica's next reading, made up by the test."""

    def __init__(self):
        self.by_endpoint: dict[str, runtime_pb2.GetLoadResponse] = {}

    def read(self, endpoints):
        return {e: self.by_endpoint[e] for e in endpoints if e in self.by_endpoint}


def deployment(replicas: int, tenant: str = "alpha", **fields) -> S.Deployment:
    d = S.Deployment(
        id=f"d-{tenant}", tenant=tenant, replicas=replicas, state=S.DEPLOYMENT_STATE_READY, autoscaling=policy(**fields)
    )
    for i in range(replicas):
        d.replica_status.add(id=f"{tenant}-r{i}", endpoint=f"{tenant}:{i}", ready=True)
    return d


def test_the_autoscaler_asks_with_the_reason_keeps_a_tenant_under_its_cap_and_waits_after_a_refusal():
    clock = [0.0]
    listed: list[S.Deployment] = []
    asked: list[tuple[str, int, str]] = []
    readings = Readings()
    scaler = Autoscaler(
        lambda states: [d for d in listed if d.state in states], lambda *change: asked.append(change[:3]), readings,
        CollectorRegistry(), max_replicas_per_tenant=3, clock=lambda: clock[0],
    )  # fmt: skip
    alpha = deployment(1, max_replicas=8)
    listed[:] = [alpha]
    readings.by_endpoint["alpha:0"] = reading(0, 0.0)
    scaler.run_once()
    assert asked == []  # one reading says nothing yet
    clock[0] = 1.0
    readings.by_endpoint["alpha:0"] = reading(1000, 10.0)  # 10 in flight: 5 replicas wanted
    scaler.run_once()
    assert asked == [("d-alpha", 3, "autoscaling from 1 to 3 replica(s): 10.00 requests in flight per replica, "
                                    "target 2")]  # fmt: skip
    # The tenant's cap (3) held it at 3 of the 5 wanted. That could not be placed either: the
    # deployment is still at 1. One try with one fewer, then nothing more within the retry delay.
    asked.clear()
    for t in range(2, 20):
        clock[0] = float(t)
        readings.by_endpoint["alpha:0"] = reading(1000 * t, 10.0 * t)
        scaler.run_once()
    assert [count for _, count, _ in asked] == [2]
    clock[0] = 40.0  # past the retry delay: asked again
    readings.by_endpoint["alpha:0"] = reading(40_000, 400.0)
    scaler.run_once()
    assert [count for _, count, _ in asked] == [2, 3]


def test_one_deployment_whose_round_fails_does_not_stop_the_others_and_a_past_scale_up_does_not_block():
    clock = [0.0]
    listed = [deployment(1, "alpha", max_replicas=2), deployment(1, "beta", max_replicas=2)]
    asked: list[tuple[str, int]] = []
    readings = Readings()

    def rescale(deployment_id, replicas, why, autoscaler):
        if deployment_id == "d-alpha":
            raise RuntimeError("a bug in one deployment's round")
        asked.append((deployment_id, replicas))

    scaler = Autoscaler(lambda states: listed, rescale, readings, CollectorRegistry(), None, clock=lambda: clock[0])
    for tenant in ("alpha", "beta"):
        readings.by_endpoint[f"{tenant}:0"] = reading(0, 0.0)
    scaler.run_once()
    clock[0] = 1.0
    for tenant in ("alpha", "beta"):
        readings.by_endpoint[f"{tenant}:0"] = reading(100, 5.0)
    scaler.run_once()
    assert asked == [("d-beta", 2)]  # alpha's failure was logged, beta's round went on
    # beta scaled up, served 2, and back to 1 later: a new burst within 30 s asks again at once.
    listed[1] = deployment(2, "beta", max_replicas=2)
    readings.by_endpoint["beta:1"] = reading(0, 0.0)
    clock[0] = 2.0
    readings.by_endpoint["beta:0"] = reading(200, 10.0)
    scaler.run_once()
    listed[1] = deployment(1, "beta", max_replicas=2)
    asked.clear()
    for t in (3.0, 4.0):
        clock[0] = t
        readings.by_endpoint["beta:0"] = reading(int(100 * t), 5.0 * t)
        scaler.run_once()
    assert asked == [("d-beta", 2)]


def test_an_idle_deployment_that_may_scale_to_zero_goes_to_zero_after_its_window_and_stays_there():
    clock = [0.0]
    asked: list[tuple[str, int, str]] = []
    readings = Readings()
    idle = deployment(1, min_replicas=0, max_replicas=2, scale_down_window_seconds=3.0)
    listed = [idle]

    def rescale(deployment_id, replicas, why, autoscaler):
        asked.append((deployment_id, replicas, why))
        listed[0].state = S.DEPLOYMENT_STATE_UPDATING  # as Updates.rescale leaves it

    scaler = Autoscaler(lambda states: listed, rescale, readings, CollectorRegistry(), None, clock=lambda: clock[0])
    readings.by_endpoint["alpha:0"] = reading(5, 1.0)
    for t in range(0, 6):  # no request from here on
        clock[0] = float(t)
        scaler.run_once()
    assert asked == [("d-alpha", 0, "autoscaling from 1 to 0 replica(s): no request for 3 s")]
    # At zero nothing is read, so nothing is decided: only a request brings a replica back.
    listed[:] = [deployment(0, min_replicas=0, max_replicas=2, scale_down_window_seconds=3.0)]
    for t in range(6, 20):
        clock[0] = float(t)
        scaler.run_once()
    assert len(asked) == 1
