"""Deployment state in Redis, so that a scheduler restart loses nothing.

A deployment is one serialized `Deployment` message; every state change is also appended to
the deployment's own event stream (the history WatchDeployment replays, then follows).
Changes are optimistic transactions (WATCH/MULTI): concurrent writers never lose an update.
The same transaction keeps an index of the deployments in each state and the running totals of
tallies.py, so that listing a few states or placing a request never reads every deployment.
An idempotency key maps to the deployment it created, per tenant, for the retention.
"""

from __future__ import annotations

import builtins
import hashlib
import re
import time
import uuid
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass

import redis
from google.protobuf.timestamp_pb2 import Timestamp

from mlaas.errors import Aborted, AlreadyExists, NotFound
from mlaas.refs import state_name
from mlaas.v1 import scheduler_pb2
from scheduler_svc import tallies
from scheduler_svc.replies import stream_entries, text
from scheduler_svc.states import TERMINAL

PREFIX = "mlaas:deployment:"
_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
INDEX = "mlaas:deployments"
IDEMPOTENCY = "mlaas:idempotency:"
TALLIES = "mlaas:tallies"
# Changed by every write: rebuilding the index and totals watches it to see none was missed.
VERSION = "mlaas:deployments:version"
BOOKKEEPING = "mlaas:deployments:bookkeeping"  # set once the index and totals exist
ALL_STATES = tuple(scheduler_pb2.DeploymentState.values())


def _now() -> Timestamp:
    stamp = Timestamp()
    stamp.FromNanoseconds(time.time_ns())
    return stamp


def _events_key(deployment_id: str) -> str:
    return f"{PREFIX}{deployment_id}:events"


def _state_key(state: int) -> str:
    return f"{INDEX}:state:{state}"


def _book(
    pipe: redis.client.Pipeline,
    before: scheduler_pb2.Deployment | None,
    after: scheduler_pb2.Deployment,
) -> None:
    """Queues the index and totals changes of one write, inside its transaction."""
    if before is None or before.state != after.state:
        if before is not None:
            pipe.srem(_state_key(before.state), after.id)
        pipe.sadd(_state_key(after.state), after.id)
    for name, increment in tallies.change(before, after).items():
        pipe.hincrby(TALLIES, name, increment)
    pipe.incr(VERSION)


@dataclass(frozen=True)
class RequestKey:
    """A tenant's idempotency key, and what the request that carries it asked for: a key reused
    for another request is refused rather than answered with the first one's deployment."""

    tenant: str
    key: str
    fingerprint: str

    @classmethod
    def of(cls, tenant: str, request: scheduler_pb2.DeployRequest) -> RequestKey | None:
        if not request.idempotency_key:
            return None
        asked = scheduler_pb2.DeployRequest()
        asked.CopyFrom(request)
        asked.idempotency_key = ""
        digest = hashlib.sha256(asked.SerializeToString(deterministic=True)).hexdigest()[:32]
        return cls(tenant, request.idempotency_key, digest)

    @property
    def redis_key(self) -> str:
        return f"{IDEMPOTENCY}{self.tenant}:{self.key}"

    def value(self, deployment_id: str) -> str:
        return f"{deployment_id}|{self.fingerprint}"


class DeploymentStore:
    def __init__(self, client: redis.Redis, retention_seconds: float = 86_400.0):
        self._redis = client
        self._retention = max(1, int(retention_seconds))
        if not self._redis.exists(BOOKKEEPING):
            self.rebuild_bookkeeping()

    def rebuild_bookkeeping(self) -> None:
        """Derives the state index and the totals from the records (a store written before they
        existed); retried until no write happened meanwhile."""
        with self._redis.pipeline() as pipe:
            while True:
                try:
                    pipe.watch(VERSION)
                    found = self.list()
                    pipe.multi()
                    pipe.delete(TALLIES, *(_state_key(s) for s in ALL_STATES))
                    for deployment in found:
                        pipe.sadd(_state_key(deployment.state), deployment.id)
                    for name, value in tallies.totals(found).items():
                        if value:
                            pipe.hset(TALLIES, name, value)
                    pipe.set(BOOKKEEPING, 1)
                    pipe.execute()
                    return
                except redis.WatchError:
                    continue

    def totals(self) -> dict[str, int]:
        """The running totals of tallies.py."""
        return {text(k): int(v) for k, v in self._redis.hgetall(TALLIES).items()}

    def create(
        self, deployment: scheduler_pb2.Deployment, request_key: RequestKey | None = None
    ) -> tuple[scheduler_pb2.Deployment, bool]:
        """Stores a new QUEUED deployment, or returns the one this tenant's key already made."""
        deployment.id = deployment.id or f"d-{uuid.uuid4().hex[:12]}"
        while request_key is not None and not self._redis.set(
            request_key.redis_key, request_key.value(deployment.id), nx=True, ex=self._retention
        ):
            stored = self._redis.get(request_key.redis_key)
            if stored is not None:
                return self._made_by(request_key, stored), False
            # The key expired between the two reads: take it for this deployment.
        deployment.state = scheduler_pb2.DEPLOYMENT_STATE_QUEUED
        deployment.created_at.CopyFrom(_now())
        deployment.updated_at.CopyFrom(deployment.created_at)
        event = scheduler_pb2.DeploymentEvent(
            state=deployment.state, time=deployment.created_at, detail="accepted, waiting for placement"
        )
        pipe = self._redis.pipeline()  # a transaction
        pipe.set(PREFIX + deployment.id, deployment.SerializeToString())
        pipe.sadd(INDEX, deployment.id)
        pipe.xadd(_events_key(deployment.id), {"event": event.SerializeToString()})
        _book(pipe, None, deployment)
        pipe.execute()
        return deployment, True

    def find_by_key(self, request_key: RequestKey | None) -> scheduler_pb2.Deployment | None:
        """The deployment an earlier request with this key made or joined, if any; AlreadyExists
        if that request asked for something else."""
        if request_key is None:
            return None
        found = self._redis.get(request_key.redis_key)
        return self._made_by(request_key, found) if found is not None else None

    def remember_key(self, request_key: RequestKey | None, deployment_id: str) -> None:
        if request_key is not None:
            self._redis.set(request_key.redis_key, request_key.value(deployment_id), nx=True, ex=self._retention)

    def _made_by(self, request_key: RequestKey, stored: bytes | str) -> scheduler_pb2.Deployment:
        deployment_id, _, fingerprint = text(stored).partition("|")
        if fingerprint and fingerprint != request_key.fingerprint:  # keys stored before had none
            raise AlreadyExists(
                f"idempotency key {request_key.key!r} was used for a different request (deployment "
                f"{deployment_id}); send that request again, or use a new key"
            )
        return self.get(deployment_id)

    def get(self, deployment_id: str) -> scheduler_pb2.Deployment:
        # Only an id: one that names another of a deployment's keys (`ID:events`) is none.
        raw = self._redis.get(PREFIX + deployment_id) if _ID.fullmatch(deployment_id) else None
        if raw is None:
            raise NotFound(f"deployment {deployment_id!r} not found")
        return scheduler_pb2.Deployment.FromString(raw)

    def list(self, states: Iterable[int] = ()) -> list[scheduler_pb2.Deployment]:
        """Every deployment, or those in `states` (read through the state index)."""
        wanted = set(states)
        members = self._redis.sunion([_state_key(s) for s in wanted]) if wanted else self._redis.smembers(INDEX)
        found = self.get_many(sorted(text(i) for i in members))
        # A record read just after a concurrent change may be in another state than its set.
        return [d for d in found if not wanted or d.state in wanted]

    # `list` in these annotations would be the method above.
    def get_many(self, ids: builtins.list[str]) -> builtins.list[scheduler_pb2.Deployment]:
        """Those of `ids` that still exist, in one read."""
        raws = self._redis.mget([PREFIX + i for i in ids]) if ids else []
        gone = [i for i, raw in zip(ids, raws, strict=True) if raw is None]
        if gone:  # past their retention: the indexes forget them too
            pipe = self._redis.pipeline()
            for key in (INDEX, *(_state_key(s) for s in TERMINAL)):
                pipe.srem(key, *gone)
            pipe.execute()
        return [scheduler_pb2.Deployment.FromString(r) for r in raws if r is not None]

    def update(
        self,
        deployment_id: str,
        change: Callable[[scheduler_pb2.Deployment], None],
        state: int | Callable[[scheduler_pb2.Deployment], int | None] | None = None,
        detail: str | Callable[[scheduler_pb2.Deployment], str] = "",
        only_from: Collection[int] = (),
        watch: Collection[str] = (),
    ) -> scheduler_pb2.Deployment:
        """Applies `change` atomically. With `state` (a state, or a function of the changed
        deployment, None for no move), moves there; with a move or a `detail` (a text, or a
        function of the changed deployment), records an event. With `only_from`,
        raises Aborted unless the deployment is in one of those states (someone else moved it).
        Keys in `watch` that `change` or `state` read make it start again if they change too."""
        key = PREFIX + deployment_id
        with self._redis.pipeline() as pipe:
            while True:
                try:
                    pipe.watch(key, *watch)
                    raw = pipe.get(key)
                    if raw is None:
                        raise NotFound(f"deployment {deployment_id!r} not found")
                    before = scheduler_pb2.Deployment.FromString(raw)
                    deployment = scheduler_pb2.Deployment.FromString(raw)
                    if only_from and deployment.state not in only_from:
                        name = state_name(deployment.state)
                        raise Aborted(f"deployment {deployment_id} is {name} now")
                    change(deployment)
                    deployment.updated_at.CopyFrom(_now())
                    pipe.multi()
                    # Evaluated on each attempt (a retry reads the deployment again).
                    said = detail(deployment) if callable(detail) else detail
                    moved = state(deployment) if callable(state) else state
                    if moved is not None:
                        deployment.state = moved
                        deployment.reason = said if moved == scheduler_pb2.DEPLOYMENT_STATE_FAILED else ""
                    if moved is not None or said:
                        event = scheduler_pb2.DeploymentEvent(
                            state=deployment.state, time=deployment.updated_at, detail=said
                        )
                        pipe.xadd(_events_key(deployment_id), {"event": event.SerializeToString()})
                    # An ended deployment is kept for the retention, its events as long.
                    ended = deployment.state in TERMINAL
                    pipe.set(key, deployment.SerializeToString(), ex=self._retention if ended else None)
                    if ended:
                        pipe.expire(_events_key(deployment_id), self._retention)
                    _book(pipe, before, deployment)
                    pipe.execute()
                    return deployment
                except redis.WatchError:
                    continue  # someone else changed it meanwhile: read again

    def last_event_id(self, deployment_id: str) -> str:
        """The stream id of the deployment's latest event ("0" with none): follow from there."""
        latest = self._redis.xrevrange(_events_key(deployment_id), count=1)
        return text(latest[0][0] or b"0") if latest else "0"

    def events(
        self, deployment_id: str, after: str = "0", block_ms: int | None = None
    ) -> builtins.list[tuple[str, scheduler_pb2.DeploymentEvent]]:
        """Events after the stream id `after` ("0": from the start); waits up to block_ms."""
        reply = self._redis.xread({_events_key(deployment_id): after}, block=block_ms)
        return [
            (text(entry_id), scheduler_pb2.DeploymentEvent.FromString(fields[b"event"]))
            for entry_id, fields in stream_entries(reply)
        ]
