"""History, sessions, replay on resume and rating a closed conversation: the cold reads.

Each of them answers the socket that asked. If the database fails (locked,
gone, disk error), the asker gets an `error` with status 0 and can retry; the
failure is logged by exception type only (a database error's text can quote
the values of the statement).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from kefu.core.model import Role
from kefu.protocol import codes
from kefu.protocol import frames as f
from kefu.protocol.out import legacy_text, rfc3339
from kefu.server.connections import Connection
from kefu.server.node import Node
from kefu.store.base import HistoryEntry, Store

REPLAY_PAGE = 500  # messages read per query when replaying on resume
FLUSH_WAIT = 5.0  # seconds a late rating waits for the writer before it is refused

log = logging.getLogger("kefu.history")


def entry_payload(entry: HistoryEntry, legacy: bool = False) -> dict[str, Any]:
    return {
        "id": entry.id,
        "sender": entry.sender.as_payload(),
        "receiver": entry.receiver.as_payload(),
        "type": entry.type,
        "payload": legacy_text(entry.type, entry.payload) if legacy else entry.payload,
        "date": rfc3339(entry.created),
    }


class History:
    def __init__(
        self,
        node: Node,
        store: Store,
        settled: Callable[[str], Awaitable[None]] | None = None,
    ) -> None:
        self._node = node
        self._store = store
        self._settled = settled  # a cluster: a socket's routes arrive once the leader decided
        self._legacy = node.settings.legacy_text_field

    async def _answer(
        self, conn: Connection, op_id: str | None, what: str, work: Awaitable[None]
    ) -> None:
        """Run `work`; if the store fails, tell the asker (status 0) instead of raising."""
        try:
            await work
        except Exception as exc:
            log.warning(
                "%s failed for socket %s: %s",
                what,
                conn.socket,
                type(exc).__name__,
                extra={"socket": conn.socket, "account": conn.account_id, "op_id": op_id},
            )
            message = f"{what} is not available right now, please retry"
            self._node.error(conn.socket, codes.UNKNOWN, message, op_id)

    async def user_history(
        self, conn: Connection, op_id: str | None, p: f.UserHistoryPayload | None
    ) -> None:
        await self._answer(conn, op_id, "history", self._user_history(conn, op_id, p))

    async def waiter_history(
        self, conn: Connection, op_id: str | None, p: f.WaiterHistoryPayload
    ) -> None:
        await self._answer(conn, op_id, "history", self._waiter_history(conn, op_id, p))

    async def session_history(self, conn: Connection, op_id: str | None) -> None:
        await self._answer(conn, op_id, "session history", self._session_history(conn, op_id))

    async def rate_closed(self, conn: Connection, rate: int, op_id: str | None) -> None:
        """Rate the user's latest conversation after it ended; only once."""
        await self._answer(conn, op_id, "rating", self._rate_closed(conn, rate, op_id))

    async def replay(self, conn: Connection, last_id: str) -> None:
        """Send again what the other side of the open conversation(s) stored after `last_id`.

        All of it, oldest first, a page at a time; each frame waits for room in
        the socket's send queue (at most half of it is used), so a long replay
        never overflows the queue of a client that reads. Stops if the socket
        closes.
        """
        await self._answer(conn, None, "replay", self._replay(conn, last_id))

    async def _user_history(
        self, conn: Connection, op_id: str | None, p: f.UserHistoryPayload | None
    ) -> None:
        assert conn.account is not None
        before, limit = (p.before, p.limit) if p is not None else (None, 100)
        entries = await self._store.history(conn.account.id, before, limit)
        data = [entry_payload(x, self._legacy) for x in entries]
        self._node.send(conn.socket, "message_history", payload=data, op_id=op_id)

    async def _waiter_history(
        self, conn: Connection, op_id: str | None, p: f.WaiterHistoryPayload
    ) -> None:
        entries = await self._store.history(p.user_id, p.before, p.limit)
        payload = {"user_id": p.user_id, "data": [entry_payload(x, self._legacy) for x in entries]}
        self._node.send(conn.socket, "message_history", payload=payload, op_id=op_id)

    async def _session_history(self, conn: Connection, op_id: str | None) -> None:
        assert conn.account is not None
        sessions = await self._store.sessions(conn.account.id)
        data = [
            {
                "id": s.conversation_id,
                "user": s.user.as_payload(),
                "waiter": s.waiter.as_payload(),
                "history": [entry_payload(s.latest, self._legacy)] if s.latest is not None else [],
                "created_at": rfc3339(s.created),
            }
            for s in sessions
        ]
        payload = {"user_id": conn.account.id, "data": data}
        self._node.send(conn.socket, "session_history", payload=payload, op_id=op_id)

    async def _rate_closed(self, conn: Connection, rate: int, op_id: str | None) -> None:
        assert conn.account is not None
        # a close-with-rating may still be queued; while the database is away the writer
        # retries it for minutes: answer "not available" instead of keeping the rater waiting
        async with asyncio.timeout(FLUSH_WAIT):
            await self._store.flush()
        conv = await self._store.latest_conversation(conn.account.id)
        if conv is None:
            self._node.error(conn.socket, codes.NO_DATA, "no conversation to rate", op_id)
            return
        if conv.rate is not None or not await self._store.rate(conv.id, rate):
            self._node.error(conn.socket, codes.DUPLICATE, "already rated", op_id)
            return
        self._node.send(conn.socket, "rate_success", payload={"rate": rate}, op_id=op_id)

    async def _replay(self, conn: Connection, last_id: str) -> None:
        if self._settled is not None:
            await self._settled(conn.socket)
        node = self._node
        user = conn.side is Role.USER
        route = node.routes.of_user_socket(conn.socket) if user else None
        routes = [route] if route is not None else node.routes.of_waiter_socket(conn.socket)
        high = max(1, conn.queue_size // 2)
        for r in routes:
            peer = r.waiter_socket if user else r.user_socket
            after = last_id
            while True:
                page = await self._store.messages_after(r.conversation_id, after, REPLAY_PAGE)
                for m in page:
                    if conn.account is not None and m.sender_id == conn.account.id:
                        continue  # the sender had its ack, or resends with the same op_id
                    if not await conn.wait_below(high):
                        return
                    payload = legacy_text(m.type, m.payload) if self._legacy else m.payload
                    node.send(
                        conn.socket,
                        m.type,
                        frm=peer,
                        payload=payload,
                        id_=m.id,
                        ts=m.created,
                    )
                if len(page) < REPLAY_PAGE:
                    break
                after = page[-1].id
