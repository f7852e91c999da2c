"""Local sockets: socket UUID -> Connection, and how frames reach each socket.

Frames pushed to a socket during one pass of the event loop are written
together, in one `write`, when the pass ends (`Writes`): a batch of acks and
deliveries costs a system call per socket, not per frame.

Backpressure: `push` never blocks. While a socket's transport buffer is over
its high-water mark the reader is slow; frames are held (at most
`send_queue_size`), and when that fills up they are dropped and the socket is
closed with 1013, so one slow client never stalls the others (it resumes and
replays later). Bulk senders that can wait (the resume replay) call
`wait_below` first, so they never overflow it themselves.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Coroutine, Iterator
from typing import Any

from kefu.core.model import Role
from kefu.protocol.codes import CLOSE_TRY_AGAIN
from kefu.server.transport import ChatTransport
from kefu.store.base import Account

log = logging.getLogger("kefu.connections")

FLUSH_AT = 64  # frames pending for one socket that are written at once, without waiting


class Writes:
    """The sockets with frames pending in this pass of the event loop; flushed once at its end."""

    __slots__ = ("_dirty", "_loop")

    def __init__(self) -> None:
        self._dirty: list[Connection] = []
        self._loop: asyncio.AbstractEventLoop | None = None

    def mark(self, conn: Connection) -> None:
        if not self._dirty:
            loop = self._loop
            if loop is None:
                loop = self._loop = asyncio.get_running_loop()
            loop.call_soon(self.flush)
        self._dirty.append(conn)

    def flush(self) -> None:
        dirty, self._dirty = self._dirty, []
        for conn in dirty:
            conn.flush()


class Connection:
    """One WebSocket, as the rest of the server sees it.

    An idle socket costs no task and no queue: frames go straight to the
    transport at the end of the loop pass, and are held only while the
    client is not reading.
    """

    __slots__ = (
        "_dead",
        "_held",
        "_limit",
        "_pending",
        "_sent",
        "_writes",
        "account",
        "address",
        "auth_failures",
        "busy",
        "closing",
        "inbox",
        "last_activity",
        "refilled",
        "side",
        "sock",
        "socket",
        "strikes",
        "tokens",
    )

    def __init__(
        self,
        socket: str,
        sock: ChatTransport,
        side: Role,
        queue_size: int,
        writes: Writes,
    ) -> None:
        self.socket = socket
        self.sock = sock
        self.side = side  # USER or WAITER: which endpoint the socket came in on
        self.account: Account | None = None
        self.address = "?"  # the client's address (see `server/proxies.py`)
        self.last_activity = 0.0
        self.auth_failures = 0
        self.closing: int | None = None
        self.tokens = 0.0  # rate-limit bucket
        self.refilled = 0.0
        self.strikes = 0  # frames refused by the rate limit in a row
        self.busy: asyncio.Task[None] | None = None  # a frame being handled that awaits
        self.inbox: deque[str | bytes] | None = None  # frames that arrived meanwhile, in order
        self._pending: list[bytes] = []  # pushed in this loop pass
        self._held: deque[bytes] | None = None  # not None while the client is not reading
        self._limit = queue_size
        self._writes = writes
        self._sent: asyncio.Event | None = None  # made by wait_below, set as frames leave
        self._dead = False  # the peer is gone: nothing will be sent
        sock.on_writable = self._writable
        sock.on_closing = self.flush  # what was pushed before a close goes before it

    @property
    def account_id(self) -> str | None:
        """The authenticated account's id, None before `auth` (for logs)."""
        return self.account.id if self.account is not None else None

    def push(self, data: bytes) -> None:
        """Send one encoded frame; closes the socket with 1013 if too many are held."""
        if self.closing is not None or self._dead:
            return
        held = self._held
        if held is not None:
            if len(held) >= self._limit:
                held.clear()
                self.close(CLOSE_TRY_AGAIN)
                return
            held.append(data)
            return
        pending = self._pending
        pending.append(data)
        if len(pending) == 1:
            self._writes.mark(self)
        elif len(pending) >= FLUSH_AT:
            self.flush()

    def flush(self) -> None:
        """Write the frames pushed so far (called by `Writes` at the end of the loop pass)."""
        frames = self._pending
        if not frames:
            return
        self._pending = []
        if self._dead:
            return
        if self._held is not None:  # paused since they were pushed
            self._held.extend(frames)
        elif not self.sock.write_frames(frames):
            self._dead = True

    def _writable(self, writable: bool) -> None:
        if not writable:
            if self._held is None:
                self._held = deque()
            return
        held, self._held = self._held, None
        if held and not self._dead:
            frames = list(held)
            if not self.sock.write_frames(frames):
                self._dead = True
        if self._sent is not None:
            self._sent.set()
        if self.closing is not None and self._held is None:
            self._start_close()

    @property
    def queue_size(self) -> int:
        return self._limit

    async def wait_below(self, frames: int) -> bool:
        """Wait until fewer than `frames` frames are held; False once the socket is closing."""
        while self.closing is None and not self._dead:
            held = self._held
            if held is None or len(held) < frames:
                break
            if self._sent is None:
                self._sent = asyncio.Event()
            self._sent.clear()
            await self._sent.wait()
        return self.closing is None and not self._dead

    def close(self, code: int) -> None:
        """Close after the frames already pushed have been sent."""
        if self.closing is not None:
            return
        self.closing = code
        if self._sent is not None:
            self._sent.set()  # wake anyone in wait_below
        self.flush()
        if self._held is None:  # else once the held frames are written (`_writable`)
            self._start_close()

    def _start_close(self) -> None:
        if not self._dead:
            self.sock.close(self.closing or 1000)
            self._dead = True

    def run(self, work: Coroutine[Any, Any, None]) -> None:
        """Run `work` as this socket's busy task (frames arriving meanwhile wait in `inbox`)."""
        self.busy = asyncio.get_running_loop().create_task(work)

    def stop(self) -> None:
        """The socket is gone: nothing more is sent; a frame still being handled is cancelled."""
        self._dead = True
        self._held = None
        self._pending = []
        busy, self.busy = self.busy, None
        if busy is not None and not busy.done():
            busy.cancel()


class Registry:
    """The sockets of this node."""

    def __init__(self) -> None:
        self.writes = Writes()
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

    def of_account(self, account_id: str) -> list[Connection]:
        """The account's authenticated sockets on this node."""
        found = (self._by_socket.get(s) for s in self._by_account.get(account_id, ()))
        return [conn for conn in found if conn is not None]

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
