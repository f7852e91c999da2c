"""The runtime: feeds events to the switchboard and carries out its commands.

It owns the switchboard, this node's connections, the routing table of the
message path and the timers. Lifecycle events go through `handle`; messages
go straight from socket to store to socket (`post_message`) using the routing
table the switchboard keeps up to date with `Route`/`Unroute`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from functools import partial
from typing import Any

import msgspec

from kefu.core import commands as c
from kefu.core import events as e
from kefu.core.errors import CoreError, NotFound
from kefu.core.switchboard import Status, Switchboard
from kefu.ids import IdGenerator
from kefu.protocol import codes
from kefu.protocol.out import encode
from kefu.server.connections import Connection, Registry
from kefu.settings import Settings
from kefu.store.base import Account, Appended, NewMessage, Store

log = logging.getLogger("kefu.runtime")

_STATUS: dict[type[CoreError], int] = {NotFound: codes.NO_DATA}


@dataclass(slots=True)
class RouteEntry:
    conversation_id: str
    user_id: str
    user_socket: str | None
    waiter_id: str
    waiter_socket: str | None


class Runtime:
    def __init__(self, settings: Settings, store: Store, ids: IdGenerator) -> None:
        self.settings = settings
        self.store = store
        self.ids = ids
        self.connections = Registry()
        self.switchboard = Switchboard(
            capacity=settings.max_users_per_waiter,
            idle_timeout=settings.idle_timeout,
            idle_grace=settings.idle_grace,
            resume_grace=settings.resume_grace,
            new_id=ids,
        )
        self.accounts: dict[str, Account] = {}
        self._routes: dict[str, RouteEntry] = {}  # conversation id -> route
        self._by_user_socket: dict[str, RouteEntry] = {}
        self._timers: dict[tuple[str, str], asyncio.TimerHandle] = {}

    # -- lifecycle -----------------------------------------------------------
    async def restore(self) -> None:
        """Rebuild the switchboard from what the store holds (queue, open conversations)."""
        state = await self.store.load_open_state()
        for conv, user, waiter in state.conversations:
            self.submit(e.ConversationRestored(conv.id, user, waiter, conv.opened, conv.queued))
        for entry in state.queue:
            self.submit(e.QueuedRestored(entry.user, entry.queued_at))
        if state.queue or state.conversations:
            log.warning(
                "restored %d queued users and %d open conversations",
                len(state.queue),
                len(state.conversations),
            )

    async def close(self) -> None:
        for handle in self._timers.values():
            handle.cancel()
        self._timers.clear()
        for conn in self.connections:
            conn.close(codes.CLOSE_RESTART)

    def submit(self, event: e.Event, op_id: str | None = None) -> None:
        """Decide a lifecycle event; a refusal is answered to the socket that sent it.

        One node decides in-process. A cluster node overrides this to send the
        event to the leader, which runs the same switchboard.
        """
        origin = getattr(event, "socket", None)
        try:
            commands = self.switchboard.handle(event, time.time())
        except CoreError as exc:
            if origin is not None:
                self.error(origin, _STATUS.get(type(exc), codes.NO_PERMISSION), str(exc), op_id)
            return
        self.execute(commands, (origin, op_id) if op_id is not None else None)

    def status(self) -> Status:
        return self.switchboard.status()

    # -- commands ------------------------------------------------------------
    def execute(
        self, commands: list[c.Command], reply: tuple[str | None, str] | None = None
    ) -> None:
        """Carry out commands in order; the first frame to `reply[0]` echoes op_id `reply[1]`."""
        for cmd in commands:
            match cmd:
                case c.Send(socket, type_, frm, payload):
                    op_id = None
                    if reply is not None and socket == reply[0]:
                        op_id, reply = reply[1], None
                    self.send(socket, type_, frm=frm, payload=payload, op_id=op_id)
                case c.Close(socket, code):
                    conn = self.connections.get(socket)
                    if conn is not None:
                        conn.close(code)
                case c.Enqueue() | c.Dequeue() | c.OpenConversation() | c.CloseConversation():
                    self.store.write(cmd)
                case c.Route():
                    self._route(cmd)
                case c.Unroute(conversation_id):
                    self._unroute(conversation_id)
                case c.StartTimer(key, at):
                    self._start_timer(key, at)
                case c.CancelTimer(key):
                    handle = self._timers.pop(key, None)
                    if handle is not None:
                        handle.cancel()

    def send(
        self,
        socket: str | None,
        type_: str,
        *,
        frm: str | None = None,
        payload: Any = None,
        id_: str | None = None,
        op_id: str | None = None,
        ts: float | None = None,
    ) -> None:
        if socket is None:
            return
        conn = self.connections.get(socket)
        if conn is None and not self.remote_delivery:
            return  # the socket is gone: nothing to encode
        ts = time.time() if ts is None else ts
        frame = encode(type_, socket, ts, frm=frm, id_=id_, op_id=op_id, payload=payload)
        if conn is not None:
            conn.push(frame)
        else:
            self.send_remote(socket, frame)

    remote_delivery = False  # a cluster node also delivers to sockets other nodes hold

    def send_remote(self, socket: str, frame: bytes) -> None:
        """An encoded frame for a socket this node does not hold (`server/cluster.py`)."""

    def _route(self, cmd: c.Route) -> None:
        self._unroute(cmd.conversation_id)
        entry = RouteEntry(
            cmd.conversation_id, cmd.user_id, cmd.user_socket, cmd.waiter_id, cmd.waiter_socket
        )
        self._routes[cmd.conversation_id] = entry
        if cmd.user_socket is not None:
            self._by_user_socket[cmd.user_socket] = entry

    def _unroute(self, conversation_id: str) -> None:
        entry = self._routes.pop(conversation_id, None)
        socket = entry.user_socket if entry is not None else None
        if socket is not None and self._by_user_socket.get(socket) is entry:
            del self._by_user_socket[socket]

    def route_of_user_socket(self, socket: str) -> RouteEntry | None:
        return self._by_user_socket.get(socket)

    def routes_of_waiter(self, socket: str) -> list[RouteEntry]:
        return [r for r in self._routes.values() if r.waiter_socket == socket]

    def _start_timer(self, key: tuple[str, str], at: float) -> None:
        old = self._timers.pop(key, None)
        if old is not None:
            old.cancel()
        delay = max(0.0, at - time.time())
        loop = asyncio.get_running_loop()
        self._timers[key] = loop.call_later(delay, self._fire, key)

    def _fire(self, key: tuple[str, str]) -> None:
        self._timers.pop(key, None)
        last_activity = None
        if key[0] == "idle":
            conn = self.connections.get(key[1])
            last_activity = conn.last_activity if conn is not None else None
        try:
            self.submit(e.TimerFired(key, last_activity))
        except Exception:  # a bug must not kill the event loop's timer callback
            log.exception("timer %s failed", key[0])

    # -- the message path ------------------------------------------------------
    def post_message(
        self,
        sender: Connection,
        route: RouteEntry,
        type_: str,
        payload: bytes,
        op_id: str | None,
        wire: bytes,
    ) -> None:
        """Store `payload`; once committed, ack the sender and deliver `wire` to the other side.

        Ordering: the writer commits and calls back in submission order, so the
        messages of one conversation are acked and delivered in the order sent.
        """
        assert sender.account is not None
        from_user = sender.side == "user"
        receiver_id = route.waiter_id if from_user else route.user_id
        message = NewMessage(
            id=self.ids(),
            conversation_id=route.conversation_id,
            type=type_,
            sender_id=sender.account.id,
            receiver_id=receiver_id,
            payload=payload,
            op_id=op_id,
            created=round(time.time(), 6),  # what the store keeps: a retry's ack matches
        )
        done = partial(self._stored, sender, route, from_user, type_, wire, op_id)
        self.store.append(message, done)

    def _stored(
        self,
        sender: Connection,
        route: RouteEntry,
        from_user: bool,
        type_: str,
        payload: bytes,
        op_id: str | None,
        result: Appended | BaseException,
    ) -> None:
        socket = sender.socket
        if isinstance(result, BaseException):
            self.error(socket, codes.UNKNOWN, "message not stored, please resend", op_id)
            return
        if result.conflict:
            self.error(socket, codes.DUPLICATE, "op_id already used for another message", op_id)
            return
        current = self._routes.get(route.conversation_id, route)
        peer = current.waiter_socket if from_user else current.user_socket
        raw = msgspec.Raw(payload)
        self.send(
            socket,
            type_ + "_success",
            frm=peer,
            payload=raw,
            id_=result.id,
            op_id=op_id,
            ts=result.created,
        )
        self.send(peer, type_, frm=socket, payload=raw, id_=result.id, ts=result.created)

    def error(
        self, socket: str, status: int, message: str, op_id: str | None = None, data: Any = None
    ) -> None:
        payload = {"message": message, "status": status, "data": data}
        self.send(socket, "error", payload=payload, op_id=op_id)
