"""How kefu runs its app: uvicorn with uvloop, and the chat sockets on the chosen transport.

The app's chat endpoints (`kefu.server.transport.publish`) are served by
the fast transport (beside the app, on uvicorn's httptools protocol, request
heads bounded by `HeadLimits`) or by the plain one (through ASGI, on h11,
whose own limit bounds request heads): KEFU_TRANSPORT and the installed
uvicorn decide (`transport.choice`).
"""

from __future__ import annotations

from typing import Any

import uvicorn

from kefu import logs
from kefu.server.transport import HeadLimits, chat_endpoints
from kefu.server.transport.choice import Kind, choose
from kefu.settings import Settings


def uvicorn_config(app: Any, settings: Settings, transport: Kind | None = None) -> uvicorn.Config:
    """The server settings every kefu endpoint runs with (also used by the conformance tests).

    `transport` overrides the choice made from `settings.transport`.
    """
    kind = transport or choose(settings.transport)
    common: dict[str, Any] = {
        "host": settings.host,
        "port": settings.port,
        "loop": "uvloop",
        "proxy_headers": False,  # kefu reads X-Forwarded-For itself, from trusted proxies only
        "ws": "websockets-sansio",  # plain: the chat sockets; fast: the app's own routes, if any
        "ws_per_message_deflate": False,
        "ws_max_size": settings.max_frame_bytes,
        "ws_ping_interval": 20.0,
        "ws_ping_timeout": 20.0,
        **logs.uvicorn_options(),  # through kefu.logs: its format, levels, no query strings
        "timeout_graceful_shutdown": 5,
    }
    endpoints = chat_endpoints(app)
    if kind == "fast":
        from kefu.server.transport.fast import http_protocol

        config = uvicorn.Config(app, http=http_protocol(endpoints, head_limits(settings)), **common)
    else:
        from kefu.server.transport.plain import ChatApp

        config = uvicorn.Config(
            ChatApp(app, endpoints),
            # h11, not httptools: h11 bounds a request head (HTTP 400 past it), httptools does not
            http="h11",
            h11_max_incomplete_event_size=settings.max_header_bytes,
            **common,
        )
    # websockets logs every frame at DEBUG: bodies and tokens never go to logs.
    logs.guard_frame_loggers()
    return config


def head_limits(settings: Settings) -> HeadLimits:
    return HeadLimits(
        max_bytes=settings.max_header_bytes,
        max_headers=settings.max_headers,
        timeout=settings.handshake_timeout,
    )


def run(app: Any, settings: Settings) -> None:
    """Serve until SIGINT/SIGTERM; on SIGTERM sockets are closed with 1012."""
    uvicorn.Server(uvicorn_config(app, settings)).run()
