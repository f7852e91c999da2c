"""The fast transport: kefu's chat sockets beside the ASGI app on one port, not through it.

The only module of kefu that imports uvicorn's internals (its httptools
protocol, `ServerState`): `choice.py` uses it only with a uvicorn version it
was tested against, and serves the plain transport (`plain.py`) otherwise.

ASGI costs a chat socket an HTTP request parsed twice, a scope, a task, a
queue hop and a pause/resume of the transport per frame in, and an awaited
`send` per frame out: under load most of the wire cost, and most of the cost
of opening a socket. So `kefu serve` runs uvicorn with `http_protocol(...)`:
uvicorn's httptools protocol, which hands an upgrade request for one of the
chat paths to a `FastSocket` instead of to the app. Every other request,
WebSocket or not, goes to the ASGI app as usual.

* The handshake is RFC 6455 section 4.2 on the headers httptools has already
  parsed: GET, `Upgrade: websocket`, `Connection: upgrade`, a 16-byte
  `Sec-WebSocket-Key`, version 13 (else HTTP 426 naming it), no extensions
  and no subprotocol. An endpoint may refuse it first (kefu checks `Origin`:
  HTTP 403).
* Frames are websockets' sans-I/O `ServerProtocol` (parser, limits, ping,
  close handshake). Complete messages go straight to the endpoint's
  `on_frame` from `data_received`; server text frames are framed here and
  written with one `write` per batch (`write_frames`).
* Keepalive as uvicorn's: a ping every `ws_ping_interval`, closed with 1011
  if no pong within `ws_ping_timeout`. A close waits at most 10 s for the
  peer's answer. uvicorn's graceful shutdown closes these sockets with 1012.

A closed socket leaves no reference cycle behind (the parser generator,
the callbacks), so it is freed by reference counting at once: under a
storm of short connections cyclic collections had taken 20-70 ms each.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import os
from collections.abc import Callable
from typing import Any, cast

import httptools
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState
from websockets.frames import Frame, Opcode
from websockets.protocol import SEND_EOF, State
from websockets.server import ServerProtocol
from websockets.utils import accept_key

from kefu.server.clientlog import client_log
from kefu.server.transport.base import Endpoint, HeadLimits, joined_headers, retry_after

try:
    from websockets.speedups import apply_mask
except ImportError:  # websockets built without its C extension
    from websockets.utils import apply_mask

log = logging.getLogger("kefu.transport")
# websockets logs every frame, bodies and tokens included, at DEBUG on the logger it is
# given: this one never passes DEBUG, whatever the log level.
_frames_log = logging.getLogger("kefu.transport.frames")
_frames_log.setLevel(logging.INFO)

_OPEN = State.OPEN
_TEXT, _BINARY, _CONT, _PONG = Opcode.TEXT, Opcode.BINARY, Opcode.CONT, Opcode.PONG
_PLAIN = frozenset((0x81, 0x82, 0x89, 0x8A))  # FIN, no RSV bits: text, binary, ping, pong
_SHORT = [bytes((0x81, n)) for n in range(126)]  # FIN + text opcode, unmasked, length < 126
CLOSE_TIMEOUT = 10.0  # seconds to wait for the peer's close frame, then drop the TCP connection


def text_frame_header(length: int) -> bytes:
    """The RFC 6455 header of one unfragmented, unmasked text frame of `length` bytes."""
    if length < 126:
        return _SHORT[length]
    if length < 65536:
        return b"\x81\x7e" + length.to_bytes(2, "big")
    return b"\x81\x7f" + length.to_bytes(8, "big")


class FastSocket(asyncio.Protocol):
    """One accepted WebSocket; the endpoint sets `on_frame`, `on_writable` and `on_closed`."""

    on_frame: Callable[[str | bytes], None] | None = None
    on_writable: Callable[[bool], None] | None = None  # False: over high water; True: drained
    on_closing: Callable[[], None] | None = None  # a close frame is about to go: write what's left
    on_closed: Callable[[], None] | None = None  # once, when the TCP connection is gone

    def __init__(
        self, transport: asyncio.Transport, config: Config, server_state: ServerState
    ) -> None:
        self.transport = transport
        self.conn = ServerProtocol(state=_OPEN, max_size=config.ws_max_size, logger=_frames_log)
        self.loop = asyncio.get_running_loop()
        self._connections = server_state.connections
        self._connections.add(self)  # type: ignore[arg-type]  # uvicorn shuts these down too
        self._max_size = config.ws_max_size
        self._unparsed: bytes | None = b""  # None once websockets' parser reads the socket
        self._parts: list[bytes] = []  # a fragmented message so far
        self._parts_text = True
        self._reading_held = False
        self._closing = False  # a close frame was written: no data frame may follow
        self._gone = False
        self._ping_interval = config.ws_ping_interval
        self._ping_timeout = config.ws_ping_timeout
        self._ping_timer: asyncio.TimerHandle | None = None
        self._pong_timer: asyncio.TimerHandle | None = None
        self._ping_payload: bytes | None = None
        self._close_timer: asyncio.TimerHandle | None = None
        self._schedule_ping()

    # -- in ----------------------------------------------------------------------
    def data_received(self, data: bytes) -> None:
        if self._unparsed is not None:
            data = self._read_plain(self._unparsed + data if self._unparsed else data)
            if not data:
                self._send_pending()
                return
        conn = self.conn
        conn.receive_data(data)
        for event in conn.events_received():
            frame = cast(Frame, event)  # in the OPEN state, events are frames
            opcode = frame.opcode
            if opcode is _TEXT or opcode is _BINARY:
                if frame.fin:
                    self._message(frame.data, opcode is _TEXT)
                else:
                    self._parts = [bytes(frame.data)]
                    self._parts_text = opcode is _TEXT
            elif opcode is _CONT:
                self._parts.append(bytes(frame.data))
                if frame.fin:
                    parts, self._parts = self._parts, []
                    self._message(b"".join(parts), self._parts_text)
            elif opcode is _PONG:
                self._pong(bytes(frame.data))
            else:  # PING or CLOSE: websockets has queued the answer; it goes before what follows
                self._send_pending()
        self._send_pending()

    def _read_plain(self, data: bytes) -> bytes:
        """Handle the frames of the common case here; what is left over is websockets' from now on.

        The common case is what chat clients send: whole (FIN) text or binary
        frames under 64 KiB and the socket's limit, pings and pongs, masked,
        no RSV bits. Those are parsed here, without websockets' parser; a
        frame cut off at the end of `data` waits in `_unparsed` for the rest.
        The first frame of any other kind (a close, a fragment, a protocol
        error, a large frame) starts websockets' parser on the socket for
        good, at that frame's first byte: from there on it checks and
        answers everything, as for any socket.
        """
        pos, end, limit = 0, len(data), self._max_size
        while end - pos >= 2:
            b0, b1 = data[pos], data[pos + 1]
            if not b1 & 0x80 or b0 not in _PLAIN:  # unmasked, RSV bits, fragments, close...
                break
            length = b1 & 0x7F
            start = pos + 6
            if length == 126:
                if b0 & 0x08:  # a control frame's payload is at most 125 bytes
                    break
                if end - pos < 4:
                    self._unparsed = data[pos:]
                    return b""
                length = (data[pos + 2] << 8) | data[pos + 3]
                start = pos + 8
            elif length == 127:
                break
            if length > limit:
                break
            stop = start + length
            if stop > end:
                self._unparsed = data[pos:]
                return b""
            payload = apply_mask(data[start:stop], data[start - 4 : start])
            pos = stop
            if b0 == 0x81 or b0 == 0x82:
                self._message(payload, b0 == 0x81)
                if self.conn.state is not _OPEN:  # closed while handling it
                    break
            elif b0 == 0x89:
                self.conn.send_pong(payload)
                self._send_pending()  # before anything a later frame makes us send
            else:
                self._pong(payload)
        else:
            self._unparsed = data[pos:] if pos < end else b""
            return b""
        self._unparsed = None
        return data[pos:]

    def _message(self, data: Any, text: bool) -> None:
        on_frame = self.on_frame
        if on_frame is None or self.conn.state is not _OPEN:
            return
        if text:
            try:
                message: str | bytes = str(data, "utf-8")
            except UnicodeDecodeError:
                self.conn.fail(1007, "invalid UTF-8")
                return
        else:
            message = bytes(data)
        try:
            on_frame(message)
        except Exception:  # a bug in one frame's handling must not break the socket
            log.exception("frame handler failed")

    def eof_received(self) -> bool | None:
        self.conn.receive_eof()
        self._send_pending()
        return None  # the transport closes itself

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
        """Send each item (UTF-8 JSON) as one text frame, all in one write; False once closing."""
        if self._closing or self._gone:
            return False
        parts: list[bytes] = []
        for data in frames:
            parts.append(text_frame_header(len(data)))
            parts.append(data)
        self.transport.write(b"".join(parts))
        return True

    def write_binary(self, data: bytes) -> bool:
        """Send one binary message (kefu's chat sends none; other endpoints may)."""
        if self.conn.state is not _OPEN or self._gone:
            return False
        self.conn.send_binary(data)
        self._send_pending()
        return True

    def close(self, code: int, reason: str = "") -> None:
        """Start the closing handshake (after what was written); the TCP close follows."""
        if self.conn.state is _OPEN and not self._gone:
            self.conn.send_close(code, reason)
            self._send_pending()

    def shutdown(self) -> None:
        """uvicorn's graceful shutdown: close with 1012, then the TCP connection (as uvicorn does).

        The close frame is flushed first; the server does not wait for the
        peer's answer, so a stopping server is not held up by slow clients.
        """
        self.close(1012)
        if not self._gone:
            self.transport.close()

    def _send_pending(self) -> None:
        conn = self.conn
        writes = conn.data_to_send()
        if not writes or self._gone:
            return
        if conn.state is not _OPEN and not self._closing:  # the close frame is among `writes`
            if self.on_closing is not None:
                self.on_closing()
            self._closing = True
        transport = self.transport
        for data in writes:
            if data is SEND_EOF or not data:
                transport.close()  # after the buffered data; the server closes TCP first
                return
            transport.write(data)
        if conn.close_expected() and self._close_timer is None:
            self._close_timer = self.loop.call_later(CLOSE_TIMEOUT, transport.close)

    def pause_writing(self) -> None:
        if self.on_writable is not None:
            self.on_writable(False)

    def resume_writing(self) -> None:
        if self.on_writable is not None:
            self.on_writable(True)

    # -- keepalive ---------------------------------------------------------------
    def _schedule_ping(self) -> None:
        if self._ping_interval:
            self._ping_timer = self.loop.call_later(self._ping_interval, self._ping)

    def _ping(self) -> None:
        self._ping_timer = None
        if self.conn.state is not _OPEN or self._gone:
            return
        self._ping_payload = os.urandom(4)
        self.conn.send_ping(self._ping_payload)
        self._send_pending()
        if self._ping_timeout:
            self._pong_timer = self.loop.call_later(self._ping_timeout, self._no_pong)
        else:
            self._schedule_ping()

    def _pong(self, payload: bytes) -> None:
        if self._ping_payload is None or payload != self._ping_payload:
            return  # unsolicited or stale
        self._ping_payload = None
        if self._pong_timer is not None:
            self._pong_timer.cancel()
            self._pong_timer = None
            self._schedule_ping()

    def _no_pong(self) -> None:
        self._pong_timer = None
        if self._gone:
            return
        self.conn.fail(1011, "keepalive ping timeout")
        self._send_pending()
        self.transport.close()

    # -- the end -----------------------------------------------------------------
    def connection_lost(self, exc: Exception | None) -> None:
        if self._gone:
            return
        self._gone = True
        for timer in (self._ping_timer, self._pong_timer, self._close_timer):
            if timer is not None:
                timer.cancel()
        self._ping_timer = self._pong_timer = self._close_timer = None
        self._connections.discard(self)
        parser = getattr(self.conn, "parser", None)  # a generator that refers to the protocol
        if parser is not None:
            parser.close()
        on_closed = self.on_closed
        self.on_frame = self.on_writable = self.on_closing = self.on_closed = None
        if on_closed is not None:
            try:
                on_closed()
            except Exception:
                log.exception("socket close handler failed")


# -- the handshake, on uvicorn's HTTP protocol ------------------------------------------------
class HttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, heads bounded; chat upgrades become `FastSocket`s.

    Before any application code runs, a request head (request line and
    headers) must arrive within `limits.timeout` and stay within
    `limits.max_bytes` and `limits.max_headers`: a head that never ends or
    grows without bound is answered 408 / 431 and the connection closed, so
    a client cannot hold memory or a connection by trickling headers.
    """

    endpoints: dict[bytes, Endpoint] = {}
    limits = HeadLimits()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._head_bytes = 0
        self._headers_seen = 0
        self._in_head = True
        self._refused = False
        self._head_timer: asyncio.TimerHandle | None = self.loop.call_later(
            self.limits.timeout, self._head_timeout
        )

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_head_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        self._unset_keepalive_if_required()
        if self._in_head:
            self._head_bytes += len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                client_log.info("%s: unsupported upgrade request", self._peer())
            return
        except httptools.HttpParserError:
            if not self._refused:  # else a callback refused it and answered already
                client_log.info("%s: invalid HTTP request", self._peer())
                self._refuse_head(400, "invalid HTTP request")
            return
        # httptools keeps a header it has not seen the end of: bound what it may keep
        if self._in_head and self._head_bytes > self.limits.max_bytes and not self._refused:
            client_log.info("%s: request head over %d bytes", self._peer(), self.limits.max_bytes)
            self._refuse_head(431, "request header fields too large")

    def _peer(self) -> str:
        return self.client[0] if self.client else "?"

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if not self._in_head:  # the next request on a kept-alive connection
            self._in_head = True
            self._head_bytes = 0
            self._headers_seen = 0
            self._stop_head_timer()
            self._head_timer = self.loop.call_later(self.limits.timeout, self._head_timeout)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers_seen += 1
        if self._headers_seen > self.limits.max_headers:
            client_log.info("%s: over %d header fields", self._peer(), self.limits.max_headers)
            self._refuse_head(431, "too many request header fields")
            raise _HeadRefused
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._stop_head_timer()
        super().on_headers_complete()

    def _stop_head_timer(self) -> None:
        timer = getattr(self, "_head_timer", None)
        if timer is not None:
            timer.cancel()
            self._head_timer = None

    def _head_timeout(self) -> None:
        self._head_timer = None
        if self._in_head and not self._refused and not self.transport.is_closing():
            if self._head_bytes:
                client_log.info("%s: request head not received in time", self._peer())
                self._refuse_head(408, "request head not received in time")
            else:  # a connection that never said anything: nothing to answer
                self._refused = True
                self.transport.close()

    def _refuse_head(self, status: int, message: str) -> None:
        self._refused = True
        self._stop_head_timer()
        self._respond(status, [], message)

    def handle_websocket_upgrade(self) -> None:
        path = httptools.parse_url(self.url).path
        endpoint = self.endpoints.get(path)
        if endpoint is None:
            super().handle_websocket_upgrade()  # the ASGI app's own WebSocket routes
        else:
            self._upgrade(endpoint, path.decode("latin-1"))
        self.parser = None  # type: ignore[assignment]  # refers back to self; not used again

    def _upgrade(self, endpoint: Endpoint, path: str) -> None:
        self.connections.discard(self)
        headers = joined_headers(self.scope["headers"])
        peer = self.client[0] if self.client else "?"
        refusal: tuple[int, list[tuple[str, str]], str] | None = _refusal(
            self.scope["method"], headers
        )
        if refusal is None:
            admitted = endpoint.admit(headers, peer)
            if admitted is not None:
                status, message = admitted
                refusal = (status, retry_after(status), message)
        if refusal is not None:
            client_log.info('%s - "WebSocket %s" %d', peer, path, refusal[0])
            self._respond(*refusal)
            return
        response = [
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n",
            b"Sec-WebSocket-Accept: ",
            accept_key(headers["sec-websocket-key"]).encode(),
            b"\r\n",
        ]
        for name, value in self.server_state.default_headers:
            response += [name, b": ", value, b"\r\n"]
        response.append(b"\r\n")
        self.transport.write(b"".join(response))
        sock = FastSocket(self.transport, self.config, self.server_state)
        self.transport.set_protocol(sock)
        endpoint.open(sock, headers, peer)

    def _respond(self, status: int, extra: list[tuple[str, str]], message: str) -> None:
        """Answer `status` with a short text body and close the connection."""
        body = message.encode()
        lines = [f"HTTP/1.1 {status} {_REASONS[status]}", *(f"{k}: {v}" for k, v in extra)]
        lines += [
            "Content-Type: text/plain; charset=utf-8",
            f"Content-Length: {len(body)}",
            "Connection: close",
        ]
        self.transport.write(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        self.transport.close()


class _HeadRefused(Exception):
    """Raised in a parser callback to stop parsing a refused head (already answered)."""


_REASONS = {
    400: "Bad Request",
    403: "Forbidden",
    408: "Request Timeout",
    426: "Upgrade Required",
    429: "Too Many Requests",
    431: "Request Header Fields Too Large",
    503: "Service Unavailable",
}


def _tokens(value: str | None) -> set[str]:
    return {t.strip().lower() for t in (value or "").split(",")}


def _refusal(method: str, headers: dict[str, str]) -> tuple[int, list[tuple[str, str]], str] | None:
    """Why this upgrade request is not a valid RFC 6455 opening handshake, or None."""
    if method != "GET":
        return 400, [], "a WebSocket handshake is a GET request"
    if "upgrade" not in _tokens(headers.get("connection")):
        return 400, [], "missing Connection: upgrade"
    if _tokens(headers.get("upgrade")) != {"websocket"}:
        return 400, [], "missing Upgrade: websocket"
    if headers.get("sec-websocket-version", "").strip() != "13":
        return 426, [("Sec-WebSocket-Version", "13")], "WebSocket version 13 is required"
    key = headers.get("sec-websocket-key", "")
    try:
        valid = len(base64.b64decode(key.encode(), validate=True)) == 16
    except (binascii.Error, UnicodeEncodeError):
        valid = False
    if not valid or "," in key:
        return 400, [], "invalid Sec-WebSocket-Key"
    return None


def http_protocol(
    endpoints: dict[str, Endpoint], limits: HeadLimits | None = None
) -> type[HttpProtocol]:
    """uvicorn's `http` protocol class, serving `endpoints` (path -> Endpoint) directly."""
    by_path = {path.encode(): endpoint for path, endpoint in endpoints.items()}
    attrs = {"endpoints": by_path, "limits": limits or HeadLimits()}
    return type("KefuHttpProtocol", (HttpProtocol,), attrs)


# What this module relies on in uvicorn's httptools protocol beyond `asyncio.Protocol`: the
# methods it overrides or calls. `choice.py` checks them before choosing this transport.
USES = (
    "_should_upgrade",
    "_unset_keepalive_if_required",
    "handle_websocket_upgrade",
    "on_header",
    "on_headers_complete",
    "on_message_begin",
)


def missing() -> list[str]:
    """What `USES` names that the installed uvicorn's httptools protocol lacks."""
    return [name for name in USES if not callable(getattr(HttpToolsProtocol, name, None))]
