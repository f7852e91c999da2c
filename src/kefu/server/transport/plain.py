"""The plain transport: kefu's chat sockets through ASGI, on uvicorn's stock protocols.

It uses public APIs only (the ASGI WebSocket messages, uvicorn's `Config`),
so it works with any uvicorn: `choice.py` serves it when the fast transport
does not know the installed uvicorn, or when KEFU_TRANSPORT=plain.

Why ASGI and not websockets' own asyncio server: the chat sockets share
the port of the pages and the API, so one HTTP server must read every
request and hand the upgrades on. websockets' server cannot take over a
connection whose request uvicorn has already read, nor uvicorn hand one
over, without the internals of one or the other; an ASGI WebSocket route
is what uvicorn promises to keep.

`ChatApp` wraps kefu's ASGI app: a WebSocket request for a chat path goes
to its `Endpoint`, everything else to the app. The same contract as the
fast transport, met differently:

* The handshake is checked by uvicorn's WebSocket implementation
  (websockets' `ServerProtocol.accept`) before kefu sees it: a bad one is
  answered HTTP 400, a version other than 13 too (the fast transport: 426).
  `admit` refusals are answered with their status before the upgrade
  (ASGI's `websocket.http.response` extension; a server without it
  answers 403).
* Frames in: one ASGI `receive` each; `hold_reading(True)` stops calling
  it, and uvicorn stops reading the socket after the next message.
* Frames out: one ASGI `send` each, awaited by a task per batch, in order,
  then the close frame. The send side is the backpressure: while more than
  `HIGH_WATER` bytes wait for a send that is held up (uvicorn waits for the
  transport to drain), `on_writable(False)`; once all have gone, `True`.
* Limits and keepalive are uvicorn's, set from the same settings: frames
  over `ws_max_size` close 1009, invalid UTF-8 1007, a ping every
  `ws_ping_interval` and 1011 without a pong in `ws_ping_timeout`, 1012 on
  shutdown, 10 s for the peer's close frame.
* `on_closing` comes before kefu's own close frames only (a close the peer
  or uvicorn starts is written before kefu hears of it), and `on_closed`
  when the closing handshake starts, not when TCP is gone.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from typing import Any

from kefu.server.clientlog import client_log
from kefu.server.transport.base import Endpoint, joined_headers, retry_after

log = logging.getLogger("kefu.transport")

Message = MutableMapping[str, Any]
Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

HIGH_WATER = 65536  # bytes waiting to be sent before the client counts as a slow reader


class PlainSocket:
    """One accepted chat socket on ASGI; the endpoint sets the callbacks."""

    on_frame: Callable[[str | bytes], None] | None = None
    on_writable: Callable[[bool], None] | None = None
    on_closing: Callable[[], None] | None = None
    on_closed: Callable[[], None] | None = None

    def __init__(self, send: Send) -> None:
        self._send = send
        self._loop = asyncio.get_running_loop()
        self._out: deque[str | bytes] = deque()  # text frames, binary ones as bytes
        self._waiting = 0  # bytes in `_out`
        self._writer: asyncio.Task[None] | None = None
        self._slow = False  # on_writable(False) was called
        self._close: tuple[int, str] | None = None  # kefu's close, sent after `_out`
        self._resume: asyncio.Event | None = None  # set while reading is not held
        self._gone = False

    # -- in ----------------------------------------------------------------------
    async def run(self, receive: Receive) -> None:
        """Hand the client's messages to `on_frame` until the socket closes."""
        try:
            while True:
                resume = self._resume
                if resume is not None and not resume.is_set():
                    await resume.wait()
                message = await receive()
                kind = message["type"]
                if kind == "websocket.disconnect":
                    return
                if kind != "websocket.receive" or self._close is not None:
                    continue
                data = message.get("text")
                if data is None:
                    data = message.get("bytes")
                on_frame = self.on_frame
                if on_frame is not None and data is not None:
                    try:
                        on_frame(data)
                    except Exception:  # a bug in one frame's handling must not break the socket
                        log.exception("frame handler failed")
        finally:
            self._end()

    def hold_reading(self, held: bool) -> None:
        """Stop (True) or restart (False) reading from the socket: backpressure on the client."""
        resume = self._resume
        if held:
            if resume is None:
                resume = self._resume = asyncio.Event()
            resume.clear()
        elif resume is not None:
            resume.set()

    # -- out ---------------------------------------------------------------------
    def write_frames(self, frames: list[bytes]) -> bool:
        """Send each item (UTF-8 JSON) as one text frame, in order; False once closing."""
        if self._close is not None or self._gone:
            return False
        out = self._out
        for data in frames:
            out.append(data.decode())
            self._waiting += len(data)
        self._wake_writer()
        return True

    def write_binary(self, data: bytes) -> bool:
        """Send one binary message (kefu's chat sends none; other endpoints may)."""
        if self._close is not None or self._gone:
            return False
        self._out.append(bytes(data))
        self._waiting += len(data)
        self._wake_writer()
        return True

    def close(self, code: int, reason: str = "") -> None:
        """Send a close frame after what was written; uvicorn ends the TCP connection."""
        if self._close is not None or self._gone:
            return
        if self.on_closing is not None:
            self.on_closing()
        self._close = (code, reason)
        self.hold_reading(False)  # read on: the peer's close frame answers ours
        self._wake_writer()

    def _wake_writer(self) -> None:
        if self._writer is None:
            self._writer = self._loop.create_task(self._write())
        elif self._waiting > HIGH_WATER and not self._slow:  # the writer is held up
            self._slow = True
            if self.on_writable is not None:
                self.on_writable(False)

    async def _write(self) -> None:
        out, send = self._out, self._send
        try:
            while True:
                if out:
                    data = out.popleft()
                    self._waiting -= len(data)
                    if isinstance(data, str):
                        await send({"type": "websocket.send", "text": data})
                    else:
                        await send({"type": "websocket.send", "bytes": data})
                    continue
                if self._slow:
                    self._slow = False
                    if self.on_writable is not None:
                        self.on_writable(True)  # may write what was held meanwhile
                    if out:
                        continue
                if self._close is not None and not self._gone:
                    code, reason = self._close
                    await send({"type": "websocket.close", "code": code, "reason": reason})
                return
        except Exception:  # the peer is gone, or closed first: uvicorn refuses the send
            out.clear()
            self._waiting = 0
        finally:
            self._writer = None

    # -- the end -----------------------------------------------------------------
    def _end(self) -> None:
        if self._gone:
            return
        self._gone = True
        writer = self._writer
        if writer is not None and not writer.done():
            writer.cancel()
        self._out.clear()
        on_closed = self.on_closed
        self.on_frame = self.on_writable = self.on_closing = self.on_closed = None
        if on_closed is not None:
            try:
                on_closed()
            except Exception:
                log.exception("socket close handler failed")


class ChatApp:
    """kefu's ASGI app with the chat paths (path -> Endpoint) served as `PlainSocket`s."""

    def __init__(self, app: ASGIApp, endpoints: Mapping[str, Endpoint]) -> None:
        self.app = app
        self.endpoints = dict(endpoints)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            endpoint = self.endpoints.get(scope["path"])
            if endpoint is not None:
                await _serve(endpoint, scope, receive, send)
                return
        await self.app(scope, receive, send)


async def _serve(endpoint: Endpoint, scope: Scope, receive: Receive, send: Send) -> None:
    if (await receive())["type"] != "websocket.connect":
        return
    headers = joined_headers(scope["headers"])
    client = scope.get("client")
    peer = str(client[0]) if client else "?"
    refusal = endpoint.admit(headers, peer)
    if refusal is not None:
        status, message = refusal
        client_log.info('%s - "WebSocket %s" %d', peer, scope["path"], status)
        await _refuse(scope, send, status, message)
        return
    await send({"type": "websocket.accept"})
    sock = PlainSocket(send)
    endpoint.open(sock, headers, peer)
    await sock.run(receive)


async def _refuse(scope: Scope, send: Send, status: int, message: str) -> None:
    """Answer `status` with a short text body instead of the upgrade."""
    if "websocket.http.response" not in (scope.get("extensions") or {}):
        await send({"type": "websocket.close", "code": 1008})  # the server answers 403
        return
    headers = [(b"content-type", b"text/plain; charset=utf-8")]
    headers += [(k.lower().encode(), v.encode()) for k, v in retry_after(status)]
    await send({"type": "websocket.http.response.start", "status": status, "headers": headers})
    await send({"type": "websocket.http.response.body", "body": message.encode()})
