"""The autoscaler: every interval it reads the load of each serving replica of the READY
deployments that have an autoscaling policy, decides their number of replicas (autoscaling.py)
and asks for the change as Scale would (updates.py), with the reason in the deployment's events.

Bounds beyond the policy's: under quotas, no tenant's autoscaled deployments grow past
MLAAS_MAX_REPLICAS_PER_TENANT replicas in all; a scale-up that could not be placed (the nodes,
or a STRICT deployment's one node, are full: its reason is in the events) is not asked again
within the retry delay."""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass

import grpc
from prometheus_client import CollectorRegistry
from prometheus_client import Counter as PromCounter

from mlaas import tls
from mlaas.client import bearer_metadata
from mlaas.errors import MlaasError
from mlaas.v1 import runtime_pb2, runtime_pb2_grpc, scheduler_pb2
from scheduler_svc.autoscaling import Load, Stabiliser, interval_load, recommend, scale_down_window

log = logging.getLogger(__name__)
S = scheduler_pb2
Rescale = Callable[[str, int, str, bool], object]  # (deployment id, replicas, why, for the autoscaler)
READY, UPDATING = S.DEPLOYMENT_STATE_READY, S.DEPLOYMENT_STATE_UPDATING
# Deployments whose replicas count against their tenant's cap: all that hold or will hold some.
HOLDING: set[int] = {
    S.DEPLOYMENT_STATE_QUEUED, S.DEPLOYMENT_STATE_PLACING, S.DEPLOYMENT_STATE_STARTING, READY, UPDATING,
    S.DEPLOYMENT_STATE_CACHED,
}  # fmt: skip
RETRY_SECONDS = 30.0


class LoadReader:
    """Replicas' load (RuntimeService.GetLoad) with the scheduler's own token, over one channel
    per replica kept while the replica serves; all asked at once, each answer awaited at most
    `timeout` seconds (a replica that does not answer is left out of that interval)."""

    def __init__(self, token: str | None, timeout: float = 0.5):
        self._metadata = bearer_metadata(token)
        self._timeout = timeout
        self._channels: dict[str, tuple[grpc.Channel, runtime_pb2_grpc.RuntimeServiceStub]] = {}

    def read(self, endpoints: Iterable[str]) -> dict[str, runtime_pb2.GetLoadResponse]:
        wanted = set(endpoints)
        for gone in set(self._channels) - wanted:
            self._channels.pop(gone)[0].close()
        calls = {}
        for endpoint in wanted:
            if endpoint not in self._channels:
                channel = tls.channel(endpoint)
                self._channels[endpoint] = channel, runtime_pb2_grpc.RuntimeServiceStub(channel)
            stub = self._channels[endpoint][1]
            calls[endpoint] = stub.GetLoad.future(
                runtime_pb2.GetLoadRequest(), metadata=self._metadata, timeout=self._timeout
            )
        readings = {}
        for endpoint, call in calls.items():
            try:
                readings[endpoint] = call.result()
            except grpc.RpcError as err:
                log.debug("no load from %s: %s", endpoint, err.details())
        return readings

    def close(self) -> None:
        for channel, _ in self._channels.values():
            channel.close()
        self._channels.clear()


@dataclass
class _Watched:
    """What the autoscaler remembers of one deployment between intervals."""

    at: float
    readings: dict[str, runtime_pb2.GetLoadResponse]  # replica id -> its last reading
    stabiliser: Stabiliser
    asked_up: tuple[int, float] = (0, 0.0)  # the last scale-up asked for (replicas, when)

    def cap(self, current: int, wanted: int, now: float) -> int:
        """`wanted`, below a scale-up that did not happen (the deployment is READY again with
        fewer replicas: they could not be placed) until the retry delay has passed. One that
        happened is forgotten: a later scale-down and a new burst ask again at once."""
        asked, at = self.asked_up
        if current >= asked:
            self.asked_up = (0, 0.0)
        elif asked <= wanted and now - at < RETRY_SECONDS:
            return max(current, asked - 1)
        return wanted


class Autoscaler:
    def __init__(
        self, store_list: Callable[[Collection[int]], list[S.Deployment]], rescale: Rescale, reader: LoadReader,
        registry: CollectorRegistry, max_replicas_per_tenant: int | None, clock: Callable[[], float] = time.monotonic,
    ):  # fmt: skip
        """`store_list(states)`: the deployments in those states; `max_replicas_per_tenant`: None
        without quotas (the replicas of every deployment holding some count, cached ones too)."""
        self._list = store_list
        self._rescale = rescale
        self._reader = reader
        self._tenant_cap = max_replicas_per_tenant
        self._clock = clock
        self._watched: dict[str, _Watched] = {}
        self._changes = PromCounter(
            "mlaas_scheduler_autoscale_changes", "Replica count changes the autoscaler asked for", ["direction"],
            registry=registry,
        )  # fmt: skip

    def run_once(self) -> None:
        deployments = self._list(HOLDING)
        autoscaled = [d for d in deployments if d.HasField("autoscaling") and d.state in (READY, UPDATING)]
        for gone in set(self._watched) - {d.id for d in autoscaled}:
            del self._watched[gone]
        ready = [d for d in autoscaled if d.state == S.DEPLOYMENT_STATE_READY]
        readings = self._reader.read(r.endpoint for d in ready for r in d.replica_status if r.ready)
        replicas_of = Counter[str]()
        for d in deployments:
            replicas_of[d.tenant] += d.replicas
        now = self._clock()
        for d in ready:
            try:  # one deployment's trouble never stops the others'
                decided = self._decide(d, readings, now)
                if decided is None:
                    continue
                wanted, load = decided
                if wanted > d.replicas and self._tenant_cap is not None:
                    wanted = max(d.replicas, min(wanted, d.replicas + self._tenant_cap - replicas_of[d.tenant]))
                if wanted != d.replicas and self._ask(d, wanted, load, now):
                    replicas_of[d.tenant] += wanted - d.replicas
            except Exception:
                log.exception("autoscaling %s failed this round", d.id)

    def _decide(
        self, d: S.Deployment, readings: dict[str, runtime_pb2.GetLoadResponse], now: float
    ) -> tuple[int, Load] | None:
        """The replicas `d` should have and the load that says so; None until two readings of
        one of its replicas."""
        current = {r.id: readings[r.endpoint] for r in d.replica_status if r.ready and r.endpoint in readings}
        watched = self._watched.get(d.id)
        if watched is None:
            self._watched[d.id] = _Watched(now, current, Stabiliser())
            return None
        watched.stabiliser.observe(now, d.replicas)
        pairs = [(watched.readings[i], reading) for i, reading in current.items() if i in watched.readings]
        seconds = now - watched.at
        watched.at, watched.readings = now, current
        if not pairs or seconds <= 0:
            return None
        load = interval_load(pairs, seconds)
        recommendation = recommend(d.autoscaling, d.replicas, load)
        wanted = watched.stabiliser.decide(now, d.replicas, recommendation, scale_down_window(d.autoscaling))
        return watched.cap(d.replicas, wanted, now), load

    def _ask(self, d: S.Deployment, wanted: int, load: Load, now: float) -> bool:
        window = scale_down_window(d.autoscaling)
        why = f"no request for {window:g} s" if wanted == 0 else _why(d.autoscaling, load, d.replicas)
        try:
            self._rescale(d.id, wanted, f"autoscaling from {d.replicas} to {wanted} replica(s): {why}", True)
        except MlaasError as err:  # it moved meanwhile (its owner changed it, or dropped it)
            log.info("autoscaling %s: %s", d.id, err.message)
            return False
        self._changes.labels("up" if wanted > d.replicas else "down").inc()
        if wanted > d.replicas:
            self._watched[d.id].asked_up = (wanted, now)
        return True


def _why(policy: S.AutoscalingPolicy, load: Load, replicas: int) -> str:
    if policy.target_inflight:
        per_replica = load.in_flight / max(replicas, 1)
        return f"{per_replica:.2f} requests in flight per replica, target {policy.target_inflight:g}"
    p99 = load.p99_seconds()
    seen = "no requests answered" if p99 is None else f"p99 latency at most {p99 * 1000:.3g} ms"
    return f"{seen}, target {policy.target_p99_ms:g} ms"
