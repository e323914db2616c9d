"""An autoscaling policy and the decisions made from it, free of any I/O (autoscaler.py reads the
replicas' load and applies them).

The load between two readings of a replica (RuntimeService.GetLoad, totals since its start) is
the mean number of requests in flight (the increase of the seconds requests spent in the
runtime, those still in flight included, over the interval's length) and the latency histogram
of what was answered in it.
From the deployment's load a recommendation is made each interval: enough replicas for the
target in flight per replica, or, for a latency target, more replicas in proportion to how far
the 99th percentile is over it and one fewer when it is under half of it. More replicas come at
once; fewer only when every recommendation of the scale-down window wanted fewer (Kubernetes'
HPA stabilisation), so a load that comes and goes does not make replicas come and go; after
the replicas went up (by the load, or by an activation from zero) a whole window passes again
before any go. Zero replicas (a policy with min_replicas 0) is wanted only by an interval in which
no request came at all: however light, traffic keeps one replica.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

from mlaas.errors import InvalidArgument
from mlaas.v1 import runtime_pb2, scheduler_pb2

DEFAULT_SCALE_DOWN_WINDOW_SECONDS = 60.0
# What a target may be: below these a trickle of load (or a rounding) would ask for the maximum.
TARGET_INFLIGHT_RANGE = (0.01, 1e6)
TARGET_P99_MS_RANGE = (0.1, 3.6e6)


def check_policy(policy: scheduler_pb2.AutoscalingPolicy, max_replicas: int, tenant_cap: int | None = None) -> None:
    """INVALID_ARGUMENT, with what is wrong, unless the policy can be followed; `tenant_cap`:
    the most replicas one tenant's autoscaled deployments get (None: no such cap)."""
    if policy.min_replicas < 0:
        raise InvalidArgument("autoscaling.min_replicas must be at least 0 (0: scale to zero when idle)")
    if policy.max_replicas < 1:
        raise InvalidArgument("autoscaling.max_replicas must be at least 1")
    if tenant_cap is not None and policy.min_replicas > tenant_cap:
        raise InvalidArgument(
            f"autoscaling.min_replicas must be at most {tenant_cap}, the replicas one tenant's autoscaled "
            "deployments get in all (MLAAS_MAX_REPLICAS_PER_TENANT)"
        )
    if not policy.min_replicas <= policy.max_replicas <= max_replicas:
        raise InvalidArgument(f"autoscaling.max_replicas must be between min_replicas and {max_replicas}")
    targets = [t for t in (policy.target_inflight, policy.target_p99_ms) if t != 0]
    if len(targets) != 1:
        raise InvalidArgument("autoscaling needs exactly one target: target_inflight or target_p99_ms")
    for name, value, (low, high) in (
        ("target_inflight", policy.target_inflight, TARGET_INFLIGHT_RANGE),
        ("target_p99_ms", policy.target_p99_ms, TARGET_P99_MS_RANGE),
    ):
        if value != 0 and not low <= value <= high:  # NaN is in no range
            raise InvalidArgument(f"autoscaling.{name} must be a number between {low:g} and {high:g}")
    window = policy.scale_down_window_seconds
    if not (math.isfinite(window) and (window == 0 or 1 <= window <= 3600)):  # under a second: a start per request
        raise InvalidArgument("autoscaling.scale_down_window_seconds must be 0 (60 s) or between 1 and 3600")


def scale_down_window(policy: scheduler_pb2.AutoscalingPolicy) -> float:
    return policy.scale_down_window_seconds or DEFAULT_SCALE_DOWN_WINDOW_SECONDS


@dataclass(frozen=True)
class Load:
    """A deployment's load over one interval, its replicas' summed."""

    in_flight: float  # mean requests in flight
    latency_counts: tuple[int, ...] = ()  # answered requests per latency bucket
    latency_bounds: tuple[float, ...] = ()

    @property
    def idle(self) -> bool:
        """No request in flight and none answered."""
        return self.in_flight == 0 and not sum(self.latency_counts)

    def p99_seconds(self) -> float | None:
        """The 99th percentile latency (the upper bound of its bucket), None with nothing answered."""
        total = sum(self.latency_counts)
        if not total:
            return None
        rank, seen = math.ceil(0.99 * total), 0
        for index, count in enumerate(self.latency_counts):
            seen += count
            if seen >= rank:
                return self.latency_bounds[min(index, len(self.latency_bounds) - 1)]
        return self.latency_bounds[-1]


Reading = runtime_pb2.GetLoadResponse


def interval_load(readings: list[tuple[Reading, Reading]], seconds: float) -> Load:
    """The load between two readings of each replica, `seconds` apart. A pair that makes no
    sense (the runtime restarted between them, or says what cannot be) is left out."""
    in_flight = 0.0
    counts: list[int] = []
    bounds: tuple[float, ...] = ()
    for before, after in readings:
        busy = after.busy_seconds - before.busy_seconds
        if not (math.isfinite(busy) and busy >= 0):
            continue
        if after.answered < before.answered or len(after.latency_counts) != len(before.latency_counts):
            continue
        in_flight += busy / seconds
        delta = [max(0, a - b) for a, b in zip(after.latency_counts, before.latency_counts, strict=True)]
        counts = [c + d for c, d in zip(counts, delta, strict=False)] if counts else delta
        bounds = tuple(after.latency_bounds_seconds)
    return Load(in_flight, tuple(counts), bounds)


def recommend(policy: scheduler_pb2.AutoscalingPolicy, current: int, load: Load) -> int:
    """The replicas the load wants now, within the policy's bounds."""
    if policy.target_inflight:
        wanted = math.ceil(min(load.in_flight / policy.target_inflight, policy.max_replicas) - 1e-9)
    else:
        p99 = load.p99_seconds()
        target = policy.target_p99_ms / 1000
        if p99 is None:
            wanted = current if load.in_flight else policy.min_replicas  # stuck, or idle
        elif p99 > target:
            wanted = max(current + 1, math.ceil(min(current * p99 / target, policy.max_replicas)))
        elif p99 < target / 2:
            wanted = current - 1
        else:
            wanted = current
    floor = policy.min_replicas if load.idle else max(policy.min_replicas, 1)
    return min(max(wanted, floor), policy.max_replicas)


@dataclass
class Stabiliser:
    """A deployment's recent recommendations, so that replicas go only when fewer were wanted
    for a whole window."""

    recommendations: deque[tuple[float, int]] = field(default_factory=deque)
    since: float | None = None  # when the first of them was made (since the replicas last went up)
    replicas: int = 0  # as many as at the last decision

    def observe(self, now: float, current: int) -> None:
        """The replicas there are now, also when nothing can be decided (none serves): once they
        went up, the window starts again."""
        if self.since is None or current > self.replicas:
            self.since = now
            self.recommendations.clear()
        self.replicas = current

    def decide(self, now: float, current: int, recommendation: int, window: float) -> int:
        """The replicas to have: more at once; fewer only once every recommendation of the last
        `window` seconds wanted fewer (the most of them)."""
        self.observe(now, current)
        self.recommendations.append((now, recommendation))
        while self.recommendations and self.recommendations[0][0] < now - window:
            self.recommendations.popleft()
        if recommendation >= current:
            return recommendation
        if self.since is not None and now - self.since < window:  # not watched a whole window yet
            return current
        # Taken as done: a request that wakes it from zero before any interval saw it there
        # still counts as replicas going up.
        self.replicas = min(current, max(r for _, r in self.recommendations))
        return self.replicas
