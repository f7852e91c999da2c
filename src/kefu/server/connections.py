"""Local sockets: socket UUID -> Connection, each with a bounded send queue and one writer.

Backpressure: `push` never blocks. When a connection's queue is full its
reader is too slow; the queue is dropped and the socket closed with 1013, so
one slow client never stalls the others (it resumes and replays later).
Bulk senders that can wait (the resume replay) call `wait_below` first, so
they never overflow the queue themselves.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Iterator
from typing import Any

from starlette.websockets import WebSocket

from kefu.protocol.codes import CLOSE_TRY_AGAIN
from kefu.store.base import Account

log = logging.getLogger("kefu.connections")

_CLOSE = object()


class Connection:
    """One WebSocket, as the rest of the server sees it.

    Frames wait in a deque; a writer task exists only while there is
    something to send, so an idle socket costs no task and no queue object.
    """

    __slots__ = (
        "_dead",
        "_frames",
        "_limit",
        "_sent",
        "_writer",
        "account",
        "auth_failures",
        "closing",
        "last_activity",
        "refilled",
        "side",
        "socket",
        "strikes",
        "tokens",
        "ws",
    )

    def __init__(self, socket: str, ws: WebSocket, side: str, queue_size: int) -> None:
        self.socket = socket
        self.ws = ws
        self.side = side  # "user" | "waiter"
        self.account: Account | None = None
        self.last_activity = 0.0
        self.auth_failures = 0
        self.closing: int | None = None
        self.tokens = 0.0  # rate-limit bucket
        self.refilled = 0.0
        self.strikes = 0  # frames refused by the rate limit in a row
        self._frames: deque[Any] = deque()
        self._limit = queue_size
        self._writer: asyncio.Task[None] | None = None
        self._sent: asyncio.Event | None = None  # made by wait_below, set after each frame
        self._dead = False  # the peer is gone: nothing queued will be sent

    def push(self, data: bytes) -> None:
        """Queue one encoded frame; closes the socket with 1013 if the queue is full."""
        if self.closing is not None or self._dead:
            return
        if len(self._frames) >= self._limit:
            self._frames.clear()
            self.close(CLOSE_TRY_AGAIN)
            return
        self._frames.append(data)
        if self._writer is None:
            self._writer = asyncio.get_running_loop().create_task(self._write_loop())

    @property
    def queue_size(self) -> int:
        return self._limit

    async def wait_below(self, frames: int) -> bool:
        """Wait until fewer than `frames` frames are queued; False once the socket is closing."""
        while self.closing is None and not self._dead and len(self._frames) >= frames:
            if self._sent is None:
                self._sent = asyncio.Event()
            self._sent.clear()
            await self._sent.wait()
        return self.closing is None and not self._dead

    def close(self, code: int) -> None:
        """Close after the frames already queued have been sent."""
        if self.closing is not None:
            return
        self.closing = code
        if self._sent is not None:
            self._sent.set()  # wake anyone in wait_below
        if len(self._frames) >= self._limit:
            self._frames.clear()
        self._frames.append((_CLOSE, code))
        if self._writer is None and not self._dead:
            self._writer = asyncio.get_running_loop().create_task(self._write_loop())

    async def _write_loop(self) -> None:
        send = self.ws.send
        frames = self._frames
        try:
            while frames:
                item = frames.popleft()
                if type(item) is bytes:
                    await send({"type": "websocket.send", "text": item.decode()})
                    if self._sent is not None:
                        self._sent.set()
                    continue
                await send({"type": "websocket.close", "code": item[1], "reason": ""})
                self._dead = True
                return
        except Exception:  # the peer went away; the reader loop notices and cleans up
            self._dead = True
            frames.clear()
        finally:
            self._writer = None
            if self._sent is not None:
                self._sent.set()

    async def stop(self) -> None:
        self._dead = True
        writer = self._writer
        if writer is not None and not writer.done():
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await writer


class Registry:
    """The sockets of this node."""

    def __init__(self) -> None:
        self._by_socket: dict[str, Connection] = {}
        self._by_account: dict[str, set[str]] = {}

    def add(self, conn: Connection) -> None:
        self._by_socket[conn.socket] = conn

    def bind(self, conn: Connection) -> None:
        """Count `conn` as one of its account's sockets (after auth)."""
        assert conn.account is not None
        self._by_account.setdefault(conn.account.id, set()).add(conn.socket)

    def sockets_of(self, account_id: str) -> int:
        return len(self._by_account.get(account_id, ()))

    def remove(self, conn: Connection) -> None:
        if self._by_socket.get(conn.socket) is conn:
            del self._by_socket[conn.socket]
        if conn.account is not None:
            sockets = self._by_account.get(conn.account.id)
            if sockets is not None:
                sockets.discard(conn.socket)
                if not sockets:
                    del self._by_account[conn.account.id]

    def get(self, socket: str | None) -> Connection | None:
        return self._by_socket.get(socket) if socket is not None else None

    def __iter__(self) -> Iterator[Connection]:
        return iter(list(self._by_socket.values()))

    def __len__(self) -> int:
        return len(self._by_socket)
