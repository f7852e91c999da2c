"""The Origin check, done before the WebSocket upgrade (a refused handshake is HTTP 403)."""

from __future__ import annotations

from urllib.parse import urlsplit

from kefu.settings import Settings


def origin_allowed(origin: str | None, host: str | None, settings: Settings) -> bool:
    """Allow clients that send no Origin (not browsers), the same host, and the allowlist.

    `KEFU_ALLOWED_ORIGINS` empty means same host only; `*` allows any origin.
    """
    if origin is None:
        return True
    allowed = settings.origins()
    if "*" in allowed:
        return True
    if origin.rstrip("/") in (a.rstrip("/") for a in allowed):
        return True
    try:
        netloc = urlsplit(origin).netloc
    except ValueError:
        return False
    return bool(host) and netloc.lower() == (host or "").lower()
