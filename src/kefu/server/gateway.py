"""The two WebSocket endpoints: accept, authenticate, read frames, hand them to the node.

Frames are handled as they arrive on the socket (`kefu.server.transport`), with
no task per socket while nothing waits: the message path runs to the store
without an await. A frame whose handling must wait (a new account's auth,
history, a rating after the chat) runs as the socket's one busy task, and the
frames after it wait in order. A bad frame is answered with an `error` frame
and never closes the socket (oversized frames excepted: 1009).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import deque
from collections.abc import Awaitable
from functools import partial
from typing import Any

import msgspec

from kefu.core import events as ev
from kefu.core.errors import NotPermitted
from kefu.core.model import Role
from kefu.protocol import codes
from kefu.protocol import frames as f
from kefu.server.accounts import Accounts
from kefu.server.connections import Connection
from kefu.server.history import History
from kefu.server.node import Node
from kefu.server.origin import origin_allowed
from kefu.server.proxies import TrustedProxies
from kefu.server.routes import RouteEntry
from kefu.server.transport import ChatTransport, Endpoint, Refusal
from kefu.store.base import Account, StoreError
from kefu.tokens import Claims, TokenError

log = logging.getLogger("kefu.gateway")

# What a store raises while its database is unreachable or refuses work (a store
# turns every driver error into a StoreError).
UNAVAILABLE: tuple[type[BaseException], ...] = (StoreError,)
REFUSED: tuple[type[BaseException], ...] = (f.FrameError, NotPermitted, *UNAVAILABLE)
INBOX_HOLD = 32  # frames waiting behind a slow one: stop reading the socket until they are done


class Gateway:
    def __init__(self, node: Node, accounts: Accounts, history: History) -> None:
        self.node = node
        self.accounts = accounts
        self.history = history
        self.settings = node.settings
        self.proxies = TrustedProxies(self.settings.trusted_proxies)
        self._unauthenticated = Tally()
        self.metrics = node.metrics
        self._accepted = node.metrics.accepted  # frames by class: one addition per frame

    def endpoints(self) -> dict[str, Endpoint]:
        """The two chat paths (published by the app, served by `kefu.server.transport`)."""
        user = Endpoint(partial(self.open, Role.USER, f.user_decoder), self.admit)
        waiter = Endpoint(partial(self.open, Role.WAITER, f.waiter_decoder), self.admit)
        return {"/v1/ws/connect/user": user, "/v1/ws/connect/waiter": waiter}

    # -- the socket's life ------------------------------------------------------
    def admit(self, headers: dict[str, str], peer: str) -> Refusal | None:
        """Refuse the upgrade for a foreign `Origin` (403) or too many sockets before `auth`.

        Sockets that have not authenticated yet cost memory and an auth timer
        each and prove nothing: at most `max_unauthenticated` of them in all
        (503) and `max_unauthenticated_per_address` per client address (429).
        """
        settings = self.settings
        if not origin_allowed(headers.get("origin"), headers.get("host"), settings):
            return 403, "origin not allowed"
        if self._unauthenticated.total >= settings.max_unauthenticated:
            return 503, "too many connections are waiting to authenticate; retry later"
        address = self.proxies.client(peer, headers.get("x-forwarded-for"))
        if self._unauthenticated.of(address) >= settings.max_unauthenticated_per_address:
            return 429, "too many connections from your address are waiting to authenticate"
        return None

    def open(
        self,
        side: Role,
        decoder: msgspec.json.Decoder[Any],
        sock: ChatTransport,
        headers: dict[str, str],
        peer: str,
    ) -> None:
        node = self.node
        queue_size = self.settings.send_queue_size
        conn = Connection(str(uuid.uuid4()), sock, side, queue_size, node.connections.writes)
        conn.address = self.proxies.client(peer, headers.get("x-forwarded-for"))
        self._unauthenticated.add(conn.address)
        conn.last_activity = conn.refilled = time.time()
        conn.tokens = float(self.settings.rate_burst)
        node.connections.add(conn)
        loop = asyncio.get_running_loop()
        auth_timer = loop.call_later(self.settings.auth_timeout, self._auth_timeout, conn)
        sock.on_frame = partial(self._on_frame, conn, decoder)
        sock.on_closed = partial(self._closed, conn, auth_timer)

    def _closed(self, conn: Connection, auth_timer: asyncio.TimerHandle) -> None:
        auth_timer.cancel()
        self.metrics.closed(conn.side, conn.closing)
        if conn.account is None:
            self._unauthenticated.remove(conn.address)
        conn.stop()
        node = self.node
        node.connections.remove(conn)
        if conn.account is not None:
            try:
                node.submit(ev.SocketClosed(conn.socket), None)
            except Exception:
                log.exception(
                    "closing socket state failed",
                    extra={"socket": conn.socket, "account": conn.account.id},
                )

    def _on_frame(
        self, conn: Connection, decoder: msgspec.json.Decoder[Any], raw: str | bytes
    ) -> None:
        """One client frame; a frame that must wait (auth, history) holds the ones after it."""
        if conn.busy is not None:
            inbox = conn.inbox
            if inbox is None:
                inbox = conn.inbox = deque()
            inbox.append(raw)
            if len(inbox) >= INBOX_HOLD:
                conn.sock.hold_reading(True)
            return
        work = self._frame(conn, decoder, raw)
        if work is not None:
            conn.run(self._drain(conn, decoder, work))

    async def _drain(
        self, conn: Connection, decoder: msgspec.json.Decoder[Any], work: Awaitable[None]
    ) -> None:
        try:
            await work
            while (inbox := conn.inbox) and conn.closing is None:
                next_work = self._frame(conn, decoder, inbox.popleft())
                if next_work is not None:
                    await next_work
        finally:
            conn.busy = None
            conn.sock.hold_reading(False)

    def _frame(
        self, conn: Connection, decoder: msgspec.json.Decoder[Any], raw: str | bytes
    ) -> Awaitable[None] | None:
        """Check, decode and dispatch one frame; what must be awaited is returned."""
        if len(raw) > self.settings.max_frame_bytes:
            self.metrics.unread("too_big")
            conn.close(codes.CLOSE_TOO_BIG)
            return None
        now = time.time()
        conn.last_activity = now
        if not self._within_rate(conn, now, raw):
            return None
        try:
            frame = f.decode(decoder, raw)
        except f.FrameError as exc:
            self.metrics.invalid(exc.data)
            self._error(conn, codes.INVALID_PARAMS, exc.message, f.op_id_of(exc.data), exc.data)
            return None
        try:
            work = self._dispatch(conn, frame)
        except REFUSED as exc:
            self._refuse(conn, frame, exc)
            return None
        if work is None:
            self._accepted[type(frame)] += 1
            return None
        return self._guarded(conn, frame, work)

    async def _guarded(self, conn: Connection, frame: f.Frame, work: Awaitable[None]) -> None:
        try:
            await work
        except REFUSED as exc:
            self._refuse(conn, frame, exc)
        else:
            self._accepted[type(frame)] += 1

    def _refuse(self, conn: Connection, frame: f.Frame, exc: BaseException) -> None:
        self.metrics.refused(frame, exc)
        if isinstance(exc, f.FrameError):
            self._error(conn, codes.INVALID_PARAMS, exc.message, frame.op_id, _raw(frame))
        elif isinstance(exc, NotPermitted):
            self._error(conn, codes.NO_PERMISSION, str(exc), frame.op_id)
        else:  # the database is down: this frame fails, the socket lives
            log.warning(
                "%s failed: %s",
                type(frame).__name__,
                type(exc).__name__,
                extra={"socket": conn.socket, "account": conn.account_id, "op_id": frame.op_id},
            )
            self._error(conn, codes.UNKNOWN, "temporarily unavailable, please retry", frame.op_id)

    def _within_rate(self, conn: Connection, now: float, raw: str | bytes) -> bool:
        """Token bucket per socket; sustained abuse closes the socket (1008)."""
        settings = self.settings
        conn.tokens = min(
            float(settings.rate_burst), conn.tokens + (now - conn.refilled) * settings.rate_limit
        )
        conn.refilled = now
        if conn.tokens >= 1.0:
            conn.tokens -= 1.0
            conn.strikes = 0
            return True
        conn.strikes += 1
        self.metrics.unread("rate_limited")
        if conn.strikes > settings.rate_burst:
            conn.close(codes.CLOSE_POLICY)
        else:
            op_id = f.op_id_of(f.loose(raw))  # the refusal is a direct reply: echo op_id
            self._error(conn, codes.INVALID_PARAMS, "rate limited", op_id)
        return False

    def _auth_timeout(self, conn: Connection) -> None:
        if conn.account is None:
            conn.close(codes.CLOSE_AUTH_TIMEOUT)

    # -- frames ---------------------------------------------------------------
    def _dispatch(self, conn: Connection, frame: f.Frame) -> Awaitable[None] | None:
        if type(frame) is f.Auth:
            return self._auth(conn, frame)
        if conn.account is None:
            self._error(conn, codes.NOT_AUTHENTICATED, "authenticate first", frame.op_id)
            return None
        if conn.side is Role.USER:
            return self._user_frame(conn, frame)
        return self._waiter_frame(conn, frame)

    def _auth(self, conn: Connection, frame: f.Auth) -> Awaitable[None] | None:
        """Authenticate; awaits only to load or save the account, or to replay `last_id`."""
        if conn.account is not None:
            return self._auth_again(conn, frame, conn.account)
        try:
            claims = self.accounts.verify(frame.payload.token)
        except TokenError as exc:
            self._auth_failed(conn, frame, exc)
            return None
        account = self.accounts.known(claims)
        if account is None:
            return self._auth_load(conn, frame, claims)
        return self._authed(conn, frame, account)

    def _auth_again(
        self, conn: Connection, frame: f.Auth, account: Account
    ) -> Awaitable[None] | None:
        """`auth` on an authenticated socket: the same account is answered as the first time."""
        try:
            claims = self.accounts.verify(frame.payload.token)
        except TokenError as exc:
            self._error(conn, codes.NOT_AUTHENTICATED, str(exc), frame.op_id)
            return None
        if not self.accounts.names(claims, account):
            message = "this socket is authenticated as another account; open a new socket for it"
            self._error(conn, codes.NO_PERMISSION, message, frame.op_id)
            return None
        payload = account.profile().as_payload()
        self.node.send(conn.socket, "auth_success", payload=payload, op_id=frame.op_id)
        if frame.payload.last_id is not None:
            return self.history.replay(conn, frame.payload.last_id)
        return None

    async def _auth_load(self, conn: Connection, frame: f.Auth, claims: Claims) -> None:
        try:
            account = await self.accounts.load(claims)
        except TokenError as exc:
            self._auth_failed(conn, frame, exc)
            return
        replay = self._authed(conn, frame, account)
        if replay is not None:
            await replay

    def _auth_failed(self, conn: Connection, frame: f.Auth, exc: TokenError) -> None:
        conn.auth_failures += 1
        self.metrics.auth_failures[conn.side.value] += 1
        self._error(conn, codes.NOT_AUTHENTICATED, str(exc), frame.op_id)
        if conn.auth_failures >= self.settings.max_auth_failures:
            conn.close(codes.CLOSE_POLICY)

    def _authed(self, conn: Connection, frame: f.Auth, account: Account) -> Awaitable[None] | None:
        if conn.side is Role.WAITER and account.role not in (Role.WAITER, Role.ADMIN):
            self._error(conn, codes.NO_PERMISSION, "this socket is for waiters", frame.op_id)
            return None
        limit = self.settings.max_user_sockets
        if conn.side is Role.USER and self.node.connections.sockets_of(account.id) >= limit:
            self._error(conn, codes.NO_PERMISSION, f"at most {limit} sockets per user", frame.op_id)
            return None
        conn.account = account
        self._unauthenticated.remove(conn.address)
        self.node.connections.bind(conn)
        profile = account.profile()
        self.node.send(conn.socket, "auth_success", payload=profile.as_payload(), op_id=frame.op_id)
        if conn.side is Role.USER:
            self.node.submit(ev.UserAuthed(conn.socket, profile), None)
        else:
            self.node.submit(ev.WaiterAuthed(conn.socket, profile), None)
        if frame.payload.last_id is not None:
            return self.history.replay(conn, frame.payload.last_id)
        return None

    def _user_frame(self, conn: Connection, frame: f.Frame) -> Awaitable[None] | None:
        node = self.node
        match frame:
            case f.MessageText() | f.MessageImage():
                route = node.routes.of_user_socket(conn.socket)
                if route is None:
                    node.send(conn.socket, "not_connect", op_id=frame.op_id)
                    return None
                self._post(conn, route, frame)
            case f.Connect():
                node.submit(ev.UserConnect(conn.socket), frame.op_id)
            case f.UserDisconnect():
                node.submit(ev.UserDisconnect(conn.socket), frame.op_id)
            case f.UserHistory(payload=p):
                return self.history.user_history(conn, frame.op_id, p)
            case f.UserRate(payload=p):
                if node.routes.of_user_socket(conn.socket) is not None:
                    node.submit(ev.UserRate(conn.socket, p.rate), frame.op_id)
                else:
                    return self.history.rate_closed(conn, p.rate, frame.op_id)
            case f.Typing() | f.Read():
                route = node.routes.of_user_socket(conn.socket)
                if route is None:
                    node.send(conn.socket, "not_connect", op_id=frame.op_id)
                    return None
                node.send(
                    route.waiter_socket,
                    frame.__struct_config__.tag,  # type: ignore[arg-type]
                    frm=conn.socket,
                    payload=frame.payload,
                )
        return None

    def _waiter_frame(self, conn: Connection, frame: f.Frame) -> Awaitable[None] | None:
        node = self.node
        match frame:
            case f.MessageText() | f.MessageImage():
                self._post(conn, self._waiter_route(conn, frame), frame)
            case f.Ready():
                node.submit(ev.WaiterReady(conn.socket), frame.op_id)
            case f.Unready():
                node.submit(ev.WaiterUnready(conn.socket), frame.op_id)
            case f.WaiterDisconnect(payload=p):
                node.submit(ev.WaiterEnd(conn.socket, p.uuid), frame.op_id)
            case f.WaiterHistory(payload=p):
                return self.history.waiter_history(conn, frame.op_id, p)
            case f.SessionHistory():
                return self.history.session_history(conn, frame.op_id)
            case f.WaiterRate():
                route = self._waiter_route(conn, frame)
                node.send(route.user_socket, "rate", frm=conn.socket)
                node.send(conn.socket, "rate_success", frm=route.user_socket, op_id=frame.op_id)
            case f.Transfer(payload=p):
                node.submit(ev.WaiterTransfer(conn.socket, p.uuid, p.waiter_id), frame.op_id)
            case f.Typing() | f.Read():
                route = self._waiter_route(conn, frame)
                node.send(
                    route.user_socket,
                    frame.__struct_config__.tag,  # type: ignore[arg-type]
                    frm=conn.socket,
                    payload=frame.payload,
                )
        return None

    def _waiter_route(self, conn: Connection, frame: f.Frame) -> RouteEntry:
        if frame.to is None:
            raise f.FrameError("`to` (the user's socket UUID) is required")
        route = self.node.routes.of_user_socket(frame.to)
        if route is None or route.waiter_socket != conn.socket:
            raise NotPermitted(f"{frame.to!r} is not one of your users")
        return route

    def _post(self, conn: Connection, route: RouteEntry, frame: f.Frame) -> None:
        settings = self.settings
        if isinstance(frame, f.MessageText):
            payload = f.validate_text(frame.payload, settings.max_text_chars)
            stored = _ENCODE(payload)
            wire = stored
            if settings.legacy_text_field:  # old clients read the text as `message`
                wire = _ENCODE({"text": payload.text, "message": payload.text})
            self.node.post_message(conn, route, "message_text", stored, frame.op_id, wire)
        elif isinstance(frame, f.MessageImage):
            f.validate_image(frame.payload, settings.max_image_chars)
            stored = _ENCODE(frame.payload)
            self.node.post_message(conn, route, "message_image", stored, frame.op_id, stored)

    def _error(
        self, conn: Connection, status: int, message: str, op_id: str | None, data: Any = None
    ) -> None:
        self.node.error(conn.socket, status, message, op_id, data)


_ENCODE = msgspec.json.Encoder().encode


class Tally:
    """How many sockets per client address (and in all) have not authenticated yet."""

    __slots__ = ("_by_address", "total")

    def __init__(self) -> None:
        self._by_address: dict[str, int] = {}
        self.total = 0

    def of(self, address: str) -> int:
        return self._by_address.get(address, 0)

    def add(self, address: str) -> None:
        self._by_address[address] = self._by_address.get(address, 0) + 1
        self.total += 1

    def remove(self, address: str) -> None:
        left = self._by_address.get(address, 0) - 1
        if left < 0:
            return
        if left:
            self._by_address[address] = left
        else:
            del self._by_address[address]
        self.total -= 1


def _raw(frame: f.Frame) -> Any:
    """The frame as plain data, for the `data` of an error."""
    return msgspec.to_builtins(frame)
