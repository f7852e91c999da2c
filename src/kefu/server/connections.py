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
from collections.abc import Iterator
from typing import Any

from starlette.websockets import WebSocket

from kefu.protocol.codes import CLOSE_TRY_AGAIN
from kefu.store.base import Account

log = logging.getLogger("kefu.connections")

_CLOSE = object()


class Connection:
    """One WebSocket, as the rest of the server sees it."""

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
        self._queue: asyncio.Queue[Any] = asyncio.Queue(queue_size)
        self._writer: asyncio.Task[None] | None = None
        self._sent = asyncio.Event()  # set by the writer after each frame it sent
        self._dead = False  # the writer has ended: nothing queued will be sent

    def start(self) -> None:
        self._writer = asyncio.get_running_loop().create_task(self._write_loop())

    def push(self, data: bytes) -> None:
        """Queue one encoded frame; closes the socket with 1013 if the queue is full."""
        if self.closing is not None:
            return
        try:
            self._queue.put_nowait(data)
        except asyncio.QueueFull:
            self._drop_queue()
            self.close(CLOSE_TRY_AGAIN)

    @property
    def queue_size(self) -> int:
        return self._queue.maxsize

    async def wait_below(self, frames: int) -> bool:
        """Wait until fewer than `frames` frames are queued; False once the socket is closing."""
        while self.closing is None and not self._dead and self._queue.qsize() >= frames:
            self._sent.clear()
            await self._sent.wait()
        return self.closing is None and not self._dead

    def close(self, code: int) -> None:
        """Close after the frames already queued have been sent."""
        if self.closing is not None:
            return
        self.closing = code
        self._sent.set()  # wake anyone in wait_below
        try:
            self._queue.put_nowait((_CLOSE, code))
        except asyncio.QueueFull:
            self._drop_queue()
            self._queue.put_nowait((_CLOSE, code))

    def _drop_queue(self) -> None:
        while not self._queue.empty():
            self._queue.get_nowait()

    async def _write_loop(self) -> None:
        send = self.ws.send
        queue = self._queue
        sent = self._sent
        try:
            while True:
                item = await queue.get()
                if type(item) is bytes:
                    await send({"type": "websocket.send", "text": item.decode()})
                    sent.set()
                    continue
                await send({"type": "websocket.close", "code": item[1], "reason": ""})
                return
        except Exception:  # the peer went away; the reader loop notices and cleans up
            return
        finally:
            self._dead = True
            sent.set()

    async def stop(self) -> None:
        if self._writer is not None and not self._writer.done():
            self._writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._writer


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
