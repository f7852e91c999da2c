"""What a chat endpoint sees of a WebSocket, whichever transport carries it.

The gateway and its connections are written against `ChatTransport` and
`Endpoint` only: the fast transport (`fast.py`, on uvicorn's internals) and
the plain one (`plain.py`, on ASGI) both implement them, with the same close
codes, frame size limit (1009), keepalive and backpressure.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

Refusal = tuple[int, str]  # (HTTP status, message) for an upgrade that is refused


class ChatTransport(Protocol):
    """One accepted chat socket. The endpoint sets the callbacks in `Endpoint.open`."""

    on_frame: Callable[[str | bytes], None] | None  # a whole message from the client
    on_writable: Callable[[bool], None] | None  # False: the client reads too slowly; True: drained
    on_closing: Callable[[], None] | None  # kefu's close frame is about to go: write what's left
    on_closed: Callable[[], None] | None  # once, when the socket is gone

    def write_frames(self, frames: list[bytes]) -> bool:
        """Send each item (UTF-8 JSON) as one text frame, in order; False once closing."""
        ...

    def close(self, code: int, reason: str = "") -> None:
        """Start the closing handshake after what was written; the TCP close follows."""
        ...

    def hold_reading(self, held: bool) -> None:
        """Stop (True) or restart (False) reading the client's frames: backpressure on it."""
        ...


class BinaryTransport(ChatTransport, Protocol):
    """A transport that can also send binary messages (test endpoints; kefu's chat sends none)."""

    def write_binary(self, data: bytes) -> bool: ...


@dataclass(frozen=True, slots=True)
class Endpoint:
    """A chat WebSocket path: `admit` may refuse the upgrade, `open` takes the socket.

    `admit(headers, peer)` gets the request headers as (lower-case name, value)
    strings and the peer's address, and returns None or a `Refusal`, answered
    as that HTTP status before the upgrade; `open(sock, headers, peer)` sets
    the socket's callbacks.
    """

    open: Callable[[ChatTransport, dict[str, str], str], None]
    admit: Callable[[dict[str, str], str], Refusal | None] = lambda headers, peer: None


@dataclass(frozen=True, slots=True)
class HeadLimits:
    """What a request head may cost before the application sees it (the fast transport)."""

    max_bytes: int = 16384  # request line and headers, in total
    max_headers: int = 100
    timeout: float = 10.0  # seconds to send a whole request head, from the connection or
    # from the end of the previous response


def joined_headers(raw: Iterable[tuple[bytes, bytes]]) -> dict[str, str]:
    """ASGI-style raw headers as one string per lower-case name (repeats joined by ", ")."""
    headers: dict[str, str] = {}
    for name, value in raw:
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1").strip()
        headers[key] = f"{headers[key]}, {text}" if key in headers else text
    return headers


def retry_after(status: int) -> list[tuple[str, str]]:
    """The extra headers of a refused upgrade: a client told 429 / 503 may retry later."""
    return [("Retry-After", "5")] if status in (429, 503) else []
