"""The deployment request queue: a Redis Stream with a consumer group.

Any number of placement workers, in one or several scheduler processes, `claim` requests; a
request is removed from the group's pending list only when its worker `ack`s it. A worker that
dies leaves its requests pending; after `idle_ms` any other worker takes them over (XAUTOCLAIM).
Every delivery counts as an attempt; a request delivered more than `max_attempts` times goes to
the dead-letter stream with its last error instead of being handed out again.
"""

from __future__ import annotations

from dataclasses import dataclass

import redis

from scheduler_svc.replies import stream_entries, text

STREAM = "mlaas:deploy:queue"
GROUP = "placement"
DEAD_LETTERS = "mlaas:deploy:dead"
# Requests no node can hold now, waiting aside (scheduler_svc/waiting.py), not in the stream.
WAITING = "mlaas:deploy:waiting"
ATTEMPTS = "mlaas:deploy:attempts"
ERRORS = "mlaas:deploy:errors"


@dataclass(frozen=True)
class Claimed:
    entry_id: str
    deployment_id: str
    attempt: int


class DeploymentQueue:
    def __init__(self, client: redis.Redis, idle_ms: int = 30_000, max_attempts: int = 5):
        self._redis = client
        self.idle_ms = idle_ms
        self.max_attempts = max_attempts
        try:
            self._redis.xgroup_create(STREAM, GROUP, id="0", mkstream=True)
        except redis.ResponseError as err:
            if "BUSYGROUP" not in str(err):
                raise

    def enqueue(self, deployment_id: str) -> str:
        return text(self._redis.xadd(STREAM, {"deployment": deployment_id}))

    def _attempt(self, entry_id: str) -> int:
        return int(self._redis.hincrby(ATTEMPTS, entry_id, 1))

    def claim(self, consumer: str, count: int = 1, block_ms: int = 1000) -> list[Claimed]:
        """Requests for this worker: first ones abandoned by dead workers, then new ones."""
        # Redis 6.2 answers [next, entries]; Redis 7 adds the ids of deleted entries.
        stale = self._redis.xautoclaim(STREAM, GROUP, consumer, self.idle_ms, "0-0", count=count)[1]
        entries = list(stale)
        if len(entries) < count:
            block = None if entries else block_ms  # wait for new ones only when there is nothing else
            response = self._redis.xreadgroup(GROUP, consumer, {STREAM: ">"}, count=count - len(entries), block=block)
            entries += stream_entries(response)
        claimed = []
        for raw_id, fields in entries:
            entry_id = raw_id.decode()
            if not fields:  # deleted while pending (Redis 6.2 still lists it): nothing to do
                self._redis.xack(STREAM, GROUP, entry_id)
                continue
            deployment_id = fields[b"deployment"].decode()
            attempt = self._attempt(entry_id)
            if attempt > self.max_attempts:
                self.dead_letter(entry_id, deployment_id, f"gave up after {attempt - 1} attempts")
                continue
            claimed.append(Claimed(entry_id, deployment_id, attempt))
        return claimed

    def in_stream(self) -> set[str]:
        """The deployments with a request in the stream (waiting or claimed)."""
        return {text(fields[b"deployment"]) for _, fields in self._redis.xrange(STREAM) or [] if fields}

    def park(self, deployment_id: str) -> None:
        self._redis.sadd(WAITING, deployment_id)

    def parked(self) -> list[str]:
        return sorted(text(m) for m in self._redis.smembers(WAITING))

    def unpark(self, deployment_id: str) -> bool:
        """True for the one caller that took it out (several schedulers may look at once)."""
        return self._redis.srem(WAITING, deployment_id) == 1

    def ack(self, entry_id: str) -> None:
        """Done with the request, placed or failed for good."""
        pipe = self._redis.pipeline()
        pipe.xack(STREAM, GROUP, entry_id)
        pipe.xdel(STREAM, entry_id)
        pipe.hdel(ATTEMPTS, entry_id)
        pipe.hdel(ERRORS, entry_id)
        pipe.execute()

    def record_error(self, entry_id: str, error: str) -> None:
        """Keeps the reason of a failed attempt; the request stays pending for a retry."""
        self._redis.hset(ERRORS, entry_id, error)

    def dead_letter(self, entry_id: str, deployment_id: str, reason: str) -> None:
        last = self._redis.hget(ERRORS, entry_id)
        detail = f"{reason}: {text(last)}" if last else reason
        pipe = self._redis.pipeline()
        pipe.xadd(DEAD_LETTERS, {"deployment": deployment_id, "reason": detail})
        pipe.xack(STREAM, GROUP, entry_id)
        pipe.xdel(STREAM, entry_id)
        pipe.hdel(ATTEMPTS, entry_id)
        pipe.hdel(ERRORS, entry_id)
        pipe.execute()

    def dead_letters(self) -> list[tuple[str, str]]:
        entries = self._redis.xrange(DEAD_LETTERS) or []
        return [(text(f[b"deployment"]), text(f[b"reason"])) for _, f in entries if f]

    def pending(self) -> int:
        return int(self._redis.xpending(STREAM, GROUP)["pending"])
