"""kefu's chat sockets: the interface the gateway uses, and how an app publishes its endpoints.

Two transports implement `ChatTransport`: `fast` (beside the ASGI app, on
uvicorn's internals) and `plain` (through ASGI, on public APIs); `choice`
picks one from KEFU_TRANSPORT and the installed uvicorn, and
`kefu.server.serve` builds uvicorn's config for it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kefu.server.transport.base import (
    BinaryTransport,
    ChatTransport,
    Endpoint,
    HeadLimits,
    Refusal,
)

__all__ = [
    "BinaryTransport",
    "ChatTransport",
    "Endpoint",
    "HeadLimits",
    "Refusal",
    "chat_endpoints",
    "publish",
]

_ATTRIBUTE = "kefu_chat_endpoints"


def publish(app: Any, endpoints: Mapping[str, Endpoint]) -> None:
    """Make `endpoints` (WebSocket path -> Endpoint) the chat sockets `app` is served with."""
    setattr(app, _ATTRIBUTE, dict(endpoints))


def chat_endpoints(app: Any) -> dict[str, Endpoint]:
    """The chat sockets `app` published (`publish`); none for any other ASGI app."""
    return dict(getattr(app, _ATTRIBUTE, None) or {})
