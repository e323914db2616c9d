"""Redis replies as the scheduler's client receives them: RESP2 (redis-py's default protocol),
values as bytes (no decode_responses). redis-py types each reply for every protocol and
decoding at once; these narrow one, refusing a reply of another shape."""

from __future__ import annotations

from typing import Any


def text(reply: bytes | str) -> str:
    """A key, member or value as text."""
    return reply.decode() if isinstance(reply, bytes) else reply


def stream_entries(reply: object) -> list[Any]:
    """The entries of every stream in an XREAD or XREADGROUP reply: RESP2's [[stream, entries],
    ...], or None when a blocking read timed out."""
    if reply is None:
        return []
    if not isinstance(reply, list):
        raise TypeError(f"expected a RESP2 stream reply (a list), got {type(reply).__name__}")
    return [entry for _, entries in reply for entry in entries]
