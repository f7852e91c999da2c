"""uvicorn's WebSocket protocol with a direct path for kefu's chat sockets.

The ASGI interface costs a chat frame an `asyncio.Queue` hop, a task wake-up,
a pause and a resume of the transport and a message dict on the way in, and
an awaited `send` per frame on the way out. For the two chat endpoints that
is most of the wire cost, so this protocol (`kefu serve` runs uvicorn with it)
puts itself in the ASGI scope as `scope["extensions"]["kefu.direct"]`, and
an endpoint that has accepted the socket may then:

* set `on_frame`: every complete text or binary message is handed to it at
  once, from `data_received`, instead of being queued for `receive()` (only
  `websocket.disconnect` still arrives there);
* call `write_frames`: server text frames are framed here and written to the
  transport in one `write`, with no await;
* set `on_writable`: told when the transport's buffer passes its high-water
  mark (`False`) and when it has drained (`True`), so the caller can hold
  frames for a slow reader instead of letting the buffer grow.

Everything else (handshake, ping/pong, close handshake, the frame parser and
its limits) is uvicorn's and websockets' own; an app that never sets
`on_frame` sees plain uvicorn behaviour.

Both protocols here also break the reference cycles uvicorn and websockets
leave behind when a connection ends (a parser that refers back to its
protocol), so a closed socket is freed at once by reference counting instead
of waiting for the cyclic collector: under a storm of short connections those
collections took 20-70 ms each.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.http11 import Request
from websockets.protocol import State

log = logging.getLogger("kefu.direct")

EXTENSION = "kefu.direct"

_OPEN = State.OPEN
_SHORT = [bytes((0x81, n)) for n in range(126)]  # FIN + text opcode, unmasked, length < 126


def text_frame_header(length: int) -> bytes:
    """The RFC 6455 header of one unfragmented, unmasked text frame of `length` bytes."""
    if length < 126:
        return _SHORT[length]
    if length < 65536:
        return b"\x81\x7e" + length.to_bytes(2, "big")
    return b"\x81\x7f" + length.to_bytes(8, "big")


class HttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, which lets go of its parser once upgraded to WebSocket."""

    def handle_websocket_upgrade(self) -> None:
        super().handle_websocket_upgrade()
        self.parser = None  # type: ignore[assignment]  # refers back to self; not used again


class DirectWebSocketProtocol(WebSocketsSansIOProtocol):
    on_frame: Callable[[str | bytes], None] | None = None
    on_writable: Callable[[bool], None] | None = None
    _reading_held = False

    def handle_connect(self, event: Request) -> None:
        super().handle_connect(event)
        scope: Any = getattr(self, "scope", None)
        if scope is not None and not self.close_sent:  # accepted the upgrade: the app runs
            scope["extensions"][EXTENSION] = self

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self.on_frame = self.on_writable = None
        scope: Any = getattr(self, "scope", None)
        if scope is not None:
            scope["extensions"].pop(EXTENSION, None)
        parser = getattr(self.conn, "parser", None)  # a generator holding the ServerProtocol
        if parser is not None:
            parser.close()

    # -- in ----------------------------------------------------------------------
    def send_receive_event_to_app(self) -> None:
        on_frame = self.on_frame
        if on_frame is None:
            super().send_receive_event_to_app()
            return
        data = self.frames[0] if len(self.frames) == 1 else b"".join(self.frames)
        self.frames = []
        if self.close_sent:
            return
        if self.curr_msg_data_type == "text":
            try:
                text: str | bytes = data.decode()
            except UnicodeDecodeError:
                self.conn.send_close(1007)
                self.handle_parser_exception()
                return
        else:
            text = bytes(data)
        try:
            on_frame(text)
        except Exception:  # a bug in one frame's handling must not break the protocol
            log.exception("frame handler failed")

    def hold_reading(self, held: bool) -> None:
        """Stop (True) or restart (False) reading from the socket: backpressure on the client."""
        if held == self._reading_held or self.transport.is_closing():
            return
        self._reading_held = held
        if held:
            self.transport.pause_reading()
        else:
            self.transport.resume_reading()

    # -- out ---------------------------------------------------------------------
    def write_frames(self, frames: list[bytes]) -> bool:
        """Send each item (UTF-8 JSON) as one text frame, all in one write; False once closed."""
        if self.close_sent or self.disconnected or self.conn.state is not _OPEN:
            return False
        parts: list[bytes] = []
        for data in frames:
            parts.append(text_frame_header(len(data)))
            parts.append(data)
        self.transport.write(b"".join(parts))
        return True

    def pause_writing(self) -> None:
        super().pause_writing()
        if self.on_writable is not None:
            self.on_writable(False)

    def resume_writing(self) -> None:
        super().resume_writing()
        if self.on_writable is not None:
            self.on_writable(True)
