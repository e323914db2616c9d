"""Page tokens for the services' list rpcs: an opaque token carries where the next page starts
and a digest of the query it belongs to, so that a token passed to another query is refused
instead of paging through the wrong results."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable

from mlaas.errors import InvalidArgument

DEFAULT_PAGE = 50
MAX_PAGE = 500


def encode_page_token(position, query: str) -> str:
    """`position`: anything JSON can carry (an offset, the last key seen)."""
    raw = json.dumps({"o": position, "q": query}).encode()
    return base64.urlsafe_b64encode(raw).decode()


def is_offset(position) -> bool:
    """A position that counts items (an offset, a sequence number)."""
    return isinstance(position, int) and position >= 0


def decode_page_token(token: str, query: str, valid: Callable[[object], bool]):
    """The position a token carries, None for no token; InvalidArgument for a malformed one (a
    position `valid` refuses included) or one of another query."""
    if not token:
        return None
    try:
        data = json.loads(base64.urlsafe_b64decode(token.encode()))
        position, key = data["o"], data["q"]
    except (ValueError, KeyError, TypeError):
        raise InvalidArgument("page_token is malformed; pass back next_page_token unchanged") from None
    if key != query:
        raise InvalidArgument("page_token belongs to a different query; repeat the query that returned it")
    if not valid(position):
        raise InvalidArgument("page_token is malformed; pass back next_page_token unchanged")
    return position


def page_size(requested: int) -> int:
    if requested < 0:
        raise InvalidArgument("page_size must not be negative")
    return min(requested or DEFAULT_PAGE, MAX_PAGE)


def query_key(message) -> str:
    """A digest of a request without its paging fields, binding page tokens to their query."""
    clone = type(message)()
    clone.CopyFrom(message)
    clone.ClearField("page_token")
    clone.ClearField("page_size")
    return hashlib.sha256(clone.SerializeToString(deterministic=True)).hexdigest()[:16]
