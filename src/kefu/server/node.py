"""The node: this process's chat sockets, their routes, idle checks and the message path.

One node holds its sockets (`connections`), the routes of their open
conversations (`routes`) and their idle timers, and carries out the orders
the desk gives about them (`apply`). Lifecycle events go the other way,
through `submit`: to the desk in this process, or, in a cluster, to the
leader's desk. Messages never go through the desk: socket -> store ->
socket (`post_message`), with the routes the desk keeps up to date.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import msgspec

from kefu.core import events as e
from kefu.core.model import Role, TimerKey
from kefu.ids import IdGenerator
from kefu.protocol import codes
from kefu.protocol.out import encode
from kefu.server.connections import Connection, Registry
from kefu.server.metrics import Metrics
from kefu.server.orders import (
    CloseSocket,
    Deliver,
    ForgetAccount,
    IdleAt,
    Order,
    Pair,
    Unpair,
)
from kefu.server.routes import RouteEntry, RouteTable
from kefu.settings import Settings
from kefu.store.base import Appended, NewMessage, Store

log = logging.getLogger("kefu.node")

Submit = Callable[[e.Event, str | None], None]
RemoteDelivery = Callable[[str, bytes], None]  # (socket on another node, encoded frame)


def _not_started(event: e.Event, op_id: str | None) -> None:
    raise RuntimeError("the node is not connected to a desk yet")


def _ignore(account_id: str) -> None:
    pass


class Node:
    def __init__(self, settings: Settings, store: Store, ids: IdGenerator) -> None:
        self.settings = settings
        self.store = store
        self.ids = ids
        self.connections = Registry()
        self.routes = RouteTable()
        self.submit: Submit = _not_started  # the desk's door: set by the deployment's mode
        self.remote: RemoteDelivery | None = None  # a cluster: frames for other nodes' sockets
        self.on_forget: Callable[[str], None] = _ignore  # an account changed: the app's cache
        self._idle: dict[str, asyncio.TimerHandle] = {}
        self.metrics = Metrics()  # what /metrics reports (`server/metrics.py`)
        self._ack_starts = self.metrics.ack_starts
        self._stored_count = self.metrics.stored

    async def close(self) -> None:
        for handle in self._idle.values():
            handle.cancel()
        self._idle.clear()
        for conn in self.connections:
            conn.close(codes.CLOSE_RESTART)

    # -- orders from the desk ----------------------------------------------------------
    def apply(self, order: Order) -> None:
        match order:
            case Deliver(socket, frame):
                conn = self.connections.get(socket)
                if conn is not None:
                    conn.push(frame)
            case CloseSocket(socket, code):
                conn = self.connections.get(socket)
                if conn is not None:
                    conn.close(code)
            case Pair():
                self.routes.put(
                    RouteEntry(
                        order.conversation_id,
                        order.user_id,
                        order.user_socket,
                        order.waiter_id,
                        order.waiter_socket,
                        order.user_node,
                        order.waiter_node,
                    )
                )
            case Unpair(conversation_id):
                self.routes.drop(conversation_id)
            case IdleAt(socket, at):
                self._idle_at(socket, at)
            case ForgetAccount(account_id, hang_up):
                self.on_forget(account_id)
                if hang_up:
                    for conn in self.connections.of_account(account_id):
                        conn.close(codes.CLOSE_REVOKED)

    def reaches(self, socket: str) -> bool:
        return self.connections.get(socket) is not None

    # -- frames --------------------------------------------------------------------------
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
        """Encode one frame for `socket`, here or (in a cluster) on the node that holds it."""
        if socket is None:
            return
        conn = self.connections.get(socket)
        if conn is None and self.remote is None:
            return  # the socket is gone: nothing to encode
        ts = time.time() if ts is None else ts
        frame = encode(type_, socket, ts, frm=frm, id_=id_, op_id=op_id, payload=payload)
        if conn is not None:
            conn.push(frame)
        elif self.remote is not None:
            self.remote(socket, frame)

    def error(
        self, socket: str, status: int, message: str, op_id: str | None = None, data: Any = None
    ) -> None:
        self.metrics.errors[status] += 1
        payload = {"message": message, "status": status, "data": data}
        self.send(socket, "error", payload=payload, op_id=op_id)

    # -- idle checks: here, because the last activity of a socket is known here ---------------
    def _idle_at(self, socket: str, at: float | None) -> None:
        old = self._idle.pop(socket, None)
        if old is not None:
            old.cancel()
        if at is None:
            return
        delay = max(0.0, at - time.time())
        loop = asyncio.get_running_loop()
        self._idle[socket] = loop.call_later(delay, self._idle_due, socket)

    def _idle_due(self, socket: str) -> None:
        self._idle.pop(socket, None)
        conn = self.connections.get(socket)
        last_activity = conn.last_activity if conn is not None else None
        try:
            self.submit(e.TimerFired(TimerKey.idle(socket), last_activity), None)
        except Exception:  # a bug must not kill the event loop's timer callback
            log.exception("idle check failed", extra={"socket": socket})

    # -- the message path ------------------------------------------------------------------
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
        from_user = sender.side is Role.USER
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
            self.metrics.messages[(type_, "failed")] += 1
            self.error(socket, codes.UNKNOWN, "message not stored, please resend", op_id)
            return
        if result.conflict:
            self.metrics.messages[(type_, "conflict")] += 1
            self.error(socket, codes.DUPLICATE, "op_id already used for another message", op_id)
            return
        current = self.routes.get(route.conversation_id) or route
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
        if result.duplicate:  # acked before: its `created` is the first arrival's
            self.metrics.messages[(type_, "duplicate")] += 1
            return
        self._stored_count[type_] += 1
        starts = self._ack_starts
        if not starts:  # the first ack of this loop pass: observe them all at its end
            asyncio.get_running_loop().call_soon(self.metrics.acks_pushed)
        starts.append(result.created)
