"""Small conversions the API's answers share."""

from __future__ import annotations

from kefu.protocol.out import rfc3339


def timestamp(ts: float | None) -> str | None:
    """RFC 3339 in UTC with microseconds, as the chat frames' dates; None stays None."""
    return None if ts is None else rfc3339(ts)
