"""A deployment's lock on a real Redis (scheduler_svc/locks.py): kept while its holder lives,
however long the change takes, and free within its short expiry once the holder is gone."""

from __future__ import annotations

import time

import pytest
import redis
from redis.exceptions import LockError

from mlaas.local.redis_embedded import EmbeddedRedis
from scheduler_svc.locks import KeptLock


@pytest.fixture
def client(tmp_path):
    server = EmbeddedRedis(tmp_path / "redis").start()
    connection = redis.Redis.from_url(server.url)
    yield connection
    connection.close()
    server.stop()


def test_a_living_holder_keeps_it_past_its_expiry_and_a_dead_one_loses_it_within_it(client):
    # An expiry of 1.5 s, renewed every 0.5 s: a second of slack for a keeper thread that a
    # busy machine holds up.
    holder = KeptLock(client, "mlaas:deployment-lock:d-1", wait_seconds=5, ttl=1.5)
    with holder:
        deadline = time.monotonic() + 4.0  # more than two expiries
        while time.monotonic() < deadline:
            assert not KeptLock(client, "mlaas:deployment-lock:d-1", wait_seconds=0.1, ttl=0.6).acquire(blocking=False)
            time.sleep(0.1)
        waiting = KeptLock(client, "mlaas:deployment-lock:d-1", wait_seconds=0.2, ttl=0.6)
        with pytest.raises(LockError, match="is held by another"), waiting:
            pass
    # Released: the next holder gets it at once.
    next_holder = KeptLock(client, "mlaas:deployment-lock:d-1", wait_seconds=0.1)
    assert next_holder.acquire(blocking=False)
    next_holder.release()

    # A holder that died (nobody renews: a plain lock of the same short expiry stands for it).
    client.lock("mlaas:deployment-lock:d-2", timeout=0.6).acquire()
    started = time.monotonic()
    with KeptLock(client, "mlaas:deployment-lock:d-2", wait_seconds=10, ttl=0.6):
        assert time.monotonic() - started < 5  # freed by its expiry, not after the longest change


def test_a_holder_that_cannot_reach_redis_past_the_expiry_stops_keeping(tmp_path):
    server = EmbeddedRedis(tmp_path / "redis").start()
    holder = KeptLock(redis.Redis.from_url(server.url), "mlaas:deployment-lock:d-3", wait_seconds=1, ttl=0.3)
    assert holder.acquire()
    server.stop()  # gone: the lock cannot be kept, and the keeper gives up once it has expired
    deadline = time.monotonic() + 10
    while holder.keeping:
        assert time.monotonic() < deadline, "the keeper went on renewing a lock that had expired"
        time.sleep(0.05)
