"""The Origin check, done before the WebSocket upgrade (a refused handshake is HTTP 403).

Origins are compared as RFC 6454 origins: scheme, host and port, with the
scheme and host lowercased and the default port made explicit, so
`https://App.Example.com` and `https://app.example.com:443` name the same
origin, while `http://` vs `https://`, another port, a longer host
(`app.example.com.evil.com`) or `null` do not match. No wildcards other than
a lone `*`, no suffix matching.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from kefu.settings import Settings

_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}


def normalize(origin: str) -> tuple[str, str, int] | None:
    """(scheme, host, port) of a serialized origin, or None if it is not one."""
    try:
        parts = urlsplit(origin.strip())
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    host = parts.hostname
    if scheme not in _DEFAULT_PORTS or not host:
        return None
    if parts.username is not None or parts.password is not None:
        return None
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        return None
    return scheme, host.lower(), port if port is not None else _DEFAULT_PORTS[scheme]


def _same_host(origin: tuple[str, str, int], host_header: str) -> bool:
    """True if the Origin names the host the client connected to (the Host header)."""
    try:
        parts = urlsplit("//" + host_header.strip())
        port = parts.port
    except ValueError:
        return False
    if not parts.hostname or parts.hostname.lower() != origin[1]:
        return False
    # no port in Host: the default port of the page's scheme (e.g. behind a TLS proxy)
    if port is None:
        return origin[2] == _DEFAULT_PORTS[origin[0]]
    return port == origin[2]


def origin_allowed(origin: str | None, host: str | None, settings: Settings) -> bool:
    """Allow clients that send no Origin (not browsers), the same host, and the allowlist.

    `KEFU_ALLOWED_ORIGINS` empty means same host only; `*` allows any origin.
    """
    if origin is None:
        return True
    allowed = settings.origins()
    if "*" in allowed:
        return True
    parsed = normalize(origin)
    if parsed is None:
        return False
    if any(normalize(a) == parsed for a in allowed):
        return True
    return bool(host) and _same_host(parsed, host or "")


def cors_headers(origin: str | None, host: str | None, settings: Settings) -> dict[str, str]:
    """CORS headers that let an allowed origin's page read a public JSON endpoint."""
    if origin is None or not origin_allowed(origin, host, settings):
        return {"Vary": "Origin"}
    return {"Access-Control-Allow-Origin": origin, "Vary": "Origin"}
