"""How kefu runs its app: uvicorn with uvloop and httptools, and kefu's chat sockets beside it."""

from __future__ import annotations

import logging
from typing import Any

import uvicorn

from kefu.server.direct import Endpoint, HeadLimits, http_protocol
from kefu.settings import Settings


def uvicorn_config(app: Any, settings: Settings) -> uvicorn.Config:
    """The server settings every kefu endpoint runs with (also used by the conformance tests)."""
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        loop="uvloop",
        # httptools, bounded request heads, kefu's chat sockets beside the app
        http=http_protocol(direct_endpoints(app), head_limits(settings)),
        proxy_headers=False,  # kefu reads X-Forwarded-For itself, from trusted proxies only
        ws="websockets-sansio",  # the app's own WebSocket routes, if any
        ws_per_message_deflate=False,
        ws_max_size=settings.max_frame_bytes,
        ws_ping_interval=20.0,
        ws_ping_timeout=20.0,
        access_log=False,
        log_level=settings.log_level,
        timeout_graceful_shutdown=5,
    )
    # websockets logs every frame at DEBUG on this logger: bodies and tokens never go to logs.
    error_log = logging.getLogger("uvicorn.error")
    error_log.setLevel(max(error_log.getEffectiveLevel(), logging.INFO))
    return config


def head_limits(settings: Settings) -> HeadLimits:
    return HeadLimits(
        max_bytes=settings.max_header_bytes,
        max_headers=settings.max_headers,
        timeout=settings.handshake_timeout,
    )


def direct_endpoints(app: Any) -> dict[str, Endpoint]:
    """The WebSocket paths `app` serves directly (`app.state.direct_endpoints`), if any."""
    state = getattr(app, "state", None)
    return dict(getattr(state, "direct_endpoints", None) or {})


def run(app: Any, settings: Settings) -> None:
    """Serve until SIGINT/SIGTERM; on SIGTERM sockets are closed with 1012."""
    uvicorn.Server(uvicorn_config(app, settings)).run()
