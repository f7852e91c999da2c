"""The switchboard: queue, assignment and conversation lifecycle, as a pure state machine.

`Switchboard.handle(event, now)` applies one event and returns the commands
the I/O layer must carry out, in order. It never reads a clock, makes an id
(ids come from the `new_id` it is given) or does I/O.

Rules (protocol sections 4-6 and 10):

* One FIFO queue, ordered by first arrival (`queued_at`). A user who goes
  back to the queue because its waiter left keeps its original arrival time,
  which puts it at the front, ahead of everyone who came after it.
* A user is assigned to the ready, attached waiter with the fewest users and
  spare capacity; ties go to the waiter whose last assignment is oldest.
  Assignment runs whenever capacity may have appeared or a user queued.
* Every attached queued user whose place changed gets a fresh `connect_queue`.
* Conversations and queue places belong to accounts, not sockets. A dropped
  socket detaches its account for `resume_grace` seconds; authenticating
  again re-attaches it. When the grace runs out a user leaves the queue or
  its conversation, and a waiter's users go back to the queue. A detached
  user keeps its place but is not assigned until it returns.
* Idle: a user socket that sends nothing for `idle_timeout` gets `idle`, and
  `idle_grace` later is disconnected and closed (1000).
* An account changed by the admin API (`AccountChanged`) is forgotten by
  every node; one disabled, erased or logged out loses its sockets at once
  (`Hangup.REVOKED`) and is gone without a resume grace.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable
from dataclasses import dataclass, field

from kefu.core import commands as c
from kefu.core import events as e
from kefu.core.errors import NotAvailable, NotFound, NotPermitted
from kefu.core.model import CloseReason, Hangup, Profile, Role, TimerKey, TimerKind

IDLE_MESSAGE = "You have been idle; the conversation will end soon unless you send something."


@dataclass(slots=True)
class _Conversation:
    id: str
    user_id: str
    waiter_id: str
    opened_at: float


@dataclass(slots=True)
class _User:
    profile: Profile
    socket: str | None  # the attached socket, None while detached
    last_socket: str  # for `from` fields after the socket is gone
    queued_at: float | None = None  # set while queued, kept while served (original arrival)
    seq: int = 0  # arrival order among equal `queued_at`
    in_queue: bool = False
    conversation: _Conversation | None = None
    sockets: list[str] = field(default_factory=list)  # authenticated sockets, oldest first


@dataclass(slots=True)
class _Waiter:
    profile: Profile
    socket: str | None
    last_socket: str
    last_assigned: float
    ready: bool = False
    users: list[str] = field(default_factory=list)  # user ids, in assignment order


@dataclass(frozen=True, slots=True)
class Status:
    online_waiter_num: int
    online_user_num: int
    pending_num: int
    matchers: dict[str, list[str]]


@dataclass(frozen=True, slots=True)
class QueuedRow:
    """A queued user, as `Switchboard.live` lists it."""

    user: Profile
    queued_at: float  # its arrival: kept when it went back to the queue
    attached: bool  # a socket holds its place (else it is within its resume grace)


@dataclass(frozen=True, slots=True)
class WaiterRow:
    """A waiter the desk knows (attached, or within its resume grace)."""

    waiter: Profile
    ready: bool
    attached: bool
    load: int  # the conversations it holds
    capacity: int


@dataclass(frozen=True, slots=True)
class Live:
    """The desk at one moment: the queue in order (its head if limited) and the waiters."""

    queue: list[QueuedRow]
    queued: int  # every queued user, shown or not
    waiters: list[WaiterRow]  # by username, then id


class Switchboard:
    """All desk state of one deployment; one instance per leader."""

    def __init__(
        self,
        *,
        capacity: int,
        idle_timeout: float,
        idle_grace: float,
        resume_grace: float,
        new_id: Callable[[], str],
    ) -> None:
        self.capacity = capacity
        self.idle_timeout = idle_timeout
        self.idle_grace = idle_grace
        self.resume_grace = resume_grace
        self._new_id = new_id
        self._sockets: dict[str, tuple[Role, str]] = {}  # authenticated socket -> (role, account)
        self._users: dict[str, _User] = {}
        self._waiters: dict[str, _Waiter] = {}
        self._queue: list[tuple[float, int, str]] = []  # (queued_at, seq, user id), sorted
        self._seq = 0
        self._announced: dict[str, int] = {}  # user id -> last location sent
        self._idle_warned: dict[str, float] = {}  # user socket -> when `idle` was sent
        self._out: list[c.Command] = []
        self._now = 0.0

    # -- entry point ----------------------------------------------------------
    def handle(self, event: e.Event, now: float) -> list[c.Command]:
        """Apply one event; return the commands to carry out, in order.

        Raises a `CoreError` (before changing anything) when the event is refused.
        """
        self._now = now
        self._out = []
        handler = _HANDLERS[type(event)]
        handler(self, event)
        out, self._out = self._out, []
        return out

    # -- queries (no commands) ------------------------------------------------
    def status(self) -> Status:
        matchers: dict[str, list[str]] = {}
        for w in self._waiters.values():
            if w.socket is not None:
                sockets = (self._users[u].last_socket for u in w.users)
                matchers[w.socket] = [s for s in sockets if s]
        online_users = sum(1 for role, _ in self._sockets.values() if role is Role.USER)
        return Status(
            online_waiter_num=len(matchers),
            online_user_num=online_users,
            pending_num=len(self._queue),
            matchers=matchers,
        )

    def queue(self) -> list[str]:
        """User ids in queue order."""
        return [uid for _, _, uid in self._queue]

    def conversations(self) -> dict[str, tuple[str, str]]:
        """Open conversations: id -> (user id, waiter id)."""
        return {
            u.conversation.id: (u.conversation.user_id, u.conversation.waiter_id)
            for u in self._users.values()
            if u.conversation is not None
        }

    def waiter_load(self) -> dict[str, int]:
        return {wid: len(w.users) for wid, w in self._waiters.items()}

    def ready_waiters(self) -> int:
        """Waiters that are ready and attached (whether or not they have room)."""
        return sum(1 for w in self._waiters.values() if w.ready and w.socket is not None)

    def conversation_count(self) -> int:
        """Open conversations (each belongs to one waiter's users)."""
        return sum(len(w.users) for w in self._waiters.values())

    def account_of(self, socket: str) -> tuple[Role, str] | None:
        return self._sockets.get(socket)

    def live(self, limit: int | None = None) -> Live:
        """The queue in order (its first `limit` users, if given) and every waiter."""
        head = self._queue if limit is None else self._queue[: max(0, limit)]
        queue = []
        for queued_at, _, uid in head:
            user = self._users[uid]
            queue.append(QueuedRow(user.profile, queued_at, user.socket is not None))
        waiters = [
            WaiterRow(w.profile, w.ready, w.socket is not None, len(w.users), self.capacity)
            for w in sorted(
                self._waiters.values(), key=lambda w: (w.profile.username, w.profile.id)
            )
        ]
        return Live(queue, len(self._queue), waiters)

    # -- user events ----------------------------------------------------------
    def _user_authed(self, ev: e.UserAuthed) -> None:
        self._sockets[ev.socket] = (Role.USER, ev.profile.id)
        self._emit(c.StartTimer(TimerKey.idle(ev.socket), self._now + self.idle_timeout))
        user = self._users.get(ev.profile.id)
        if user is None:
            user = _User(ev.profile, ev.socket, ev.socket, sockets=[ev.socket])
            self._users[ev.profile.id] = user
            return
        user.profile = ev.profile
        user.sockets.append(ev.socket)
        self._attach_user(user, ev.socket)

    def _attach_user(self, user: _User, socket: str) -> None:
        """Move the user's queue place or conversation to `socket` and tell both sides."""
        previous = user.last_socket or None
        if user.socket is None:
            self._emit(c.CancelTimer(TimerKey.user_grace(user.profile.id)))
        user.socket = socket
        user.last_socket = socket
        if user.in_queue:
            self._announced.pop(user.profile.id, None)
            self._announce_queue()
            self._assign()
        elif user.conversation is not None:
            conv = user.conversation
            waiter = self._waiters[conv.waiter_id]
            self._emit(_route(conv, user, waiter))
            self._send_connect_success(user, waiter)
            if waiter.socket is not None:
                self._emit(
                    c.Send(
                        waiter.socket,
                        "new_connection",
                        socket,
                        user.profile.as_payload(uuid=socket, resumed=True, previous_uuid=previous),
                    )
                )

    def _user_connect(self, ev: e.UserConnect) -> None:
        user = self._user_by_socket(ev.socket)
        if user.socket != ev.socket:
            self._attach_user(user, ev.socket)
            if user.in_queue or user.conversation is not None:
                return
        if user.conversation is not None:
            self._send_connect_success(user, self._waiters[user.conversation.waiter_id])
            return
        if user.in_queue:
            self._send_location(user, self._location(user.profile.id))
            return
        user.queued_at = self._now
        user.seq = self._next_seq()
        self._enqueue(user)
        self._emit(c.Enqueue(user.profile.id, self._now))
        self._assign()
        self._announce_queue()

    def _user_disconnect(self, ev: e.UserDisconnect) -> None:
        user = self._user_by_socket(ev.socket)
        if user.conversation is not None:
            self._end(user.conversation, CloseReason.USER_LEFT)
            self._assign()
            self._announce_queue()
        else:
            if user.in_queue:
                self._dequeue(user)
                self._announce_queue()
            self._emit(c.Send(ev.socket, "disconnected"))

    def _user_rate(self, ev: e.UserRate) -> None:
        user = self._user_by_socket(ev.socket)
        conv = user.conversation
        if conv is None:
            raise NotFound("no open conversation to rate")
        waiter = self._waiters[conv.waiter_id]
        payload = {"rate": ev.rate}
        self._emit(c.Send(ev.socket, "rate_success", waiter.last_socket or None, payload))
        if waiter.socket is not None:
            self._emit(c.Send(waiter.socket, "rate_user_success", ev.socket, payload))
        self._end(conv, CloseReason.RATED, rate=ev.rate)
        self._assign()
        self._announce_queue()

    # -- waiter events --------------------------------------------------------
    def _waiter_authed(self, ev: e.WaiterAuthed) -> None:
        waiter = self._waiters.get(ev.profile.id)
        self._sockets[ev.socket] = (Role.WAITER, ev.profile.id)
        if waiter is None:
            self._waiters[ev.profile.id] = _Waiter(ev.profile, ev.socket, ev.socket, self._now)
            return
        waiter.profile = ev.profile
        old = waiter.socket
        if old is not None:
            self._sockets.pop(old, None)
            self._emit(c.Send(old, "kickout"), c.Close(old, Hangup.KICKOUT))
        else:
            self._emit(c.CancelTimer(TimerKey.waiter_grace(ev.profile.id)))
        previous = waiter.last_socket or None
        waiter.socket = ev.socket
        waiter.last_socket = ev.socket
        for uid in waiter.users:
            user = self._users[uid]
            conv = user.conversation
            assert conv is not None
            self._emit(_route(conv, user, waiter))
            if not user.last_socket:
                continue  # restored from storage, not back yet: announced when it returns
            if user.socket is not None:
                self._send_connect_success(user, waiter)
            self._emit(
                c.Send(
                    ev.socket,
                    "new_connection",
                    user.last_socket,
                    user.profile.as_payload(
                        uuid=user.last_socket, resumed=True, previous_uuid=previous
                    ),
                )
            )
        if waiter.ready:
            self._emit(c.Send(ev.socket, "ready"))
            self._assign()
            self._announce_queue()

    def _waiter_ready(self, ev: e.WaiterReady) -> None:
        waiter = self._waiter_by_socket(ev.socket)
        if not waiter.ready:
            waiter.ready = True
            waiter.last_assigned = self._now
        self._emit(c.Send(ev.socket, "ready"))
        self._assign()
        self._announce_queue()

    def _waiter_unready(self, ev: e.WaiterUnready) -> None:
        waiter = self._waiter_by_socket(ev.socket)
        waiter.ready = False
        self._emit(c.Send(ev.socket, "unready"))

    def _waiter_end(self, ev: e.WaiterEnd) -> None:
        waiter = self._waiter_by_socket(ev.socket)
        conv = self._conversation_of(waiter, ev.user_socket)
        self._end(conv, CloseReason.WAITER_ENDED)
        self._assign()
        self._announce_queue()

    def _waiter_transfer(self, ev: e.WaiterTransfer) -> None:
        waiter = self._waiter_by_socket(ev.socket)
        conv = self._conversation_of(waiter, ev.user_socket)
        target = self._waiters.get(ev.waiter_id)
        if target is None or target.socket is None:
            raise NotFound(f"no waiter {ev.waiter_id!r} online")
        if target is waiter or not target.ready or len(target.users) >= self.capacity:
            raise NotAvailable(f"waiter {ev.waiter_id!r} cannot take a conversation now")
        user = self._users[conv.user_id]
        self._end(conv, CloseReason.TRANSFERRED, notify_user=False, forget=False)
        self._open(user, target, transferred_from=conv.id)
        self._assign()
        self._announce_queue()

    # -- sockets and timers ---------------------------------------------------
    def _socket_closed(self, ev: e.SocketClosed) -> None:
        owner = self._sockets.pop(ev.socket, None)
        if owner is None:
            return
        role, account = owner
        if role is Role.USER:
            self._idle_warned.pop(ev.socket, None)
            self._emit(c.CancelTimer(TimerKey.idle(ev.socket)))
            user = self._users[account]
            user.sockets.remove(ev.socket)
            if user.socket != ev.socket:
                return  # an older socket of this user; the newest one holds the state
            if user.sockets:
                self._attach_user(user, user.sockets[-1])
                return
            user.socket = None
            if not user.in_queue and user.conversation is None:
                del self._users[account]
            elif self.resume_grace <= 0:
                self._user_gone(user)
            else:
                key = TimerKey.user_grace(account)
                self._emit(c.StartTimer(key, self._now + self.resume_grace))
        else:
            waiter = self._waiters[account]
            if waiter.socket != ev.socket:
                return
            waiter.socket = None
            if self.resume_grace <= 0:
                self._waiter_gone(waiter)
            else:
                key = TimerKey.waiter_grace(account)
                self._emit(c.StartTimer(key, self._now + self.resume_grace))

    def _timer_fired(self, ev: e.TimerFired) -> None:
        kind, subject = ev.key.kind, ev.key.subject
        if kind is TimerKind.IDLE:
            self._idle_check(subject, ev.last_activity)
        elif kind is TimerKind.USER_GRACE:
            user = self._users.get(subject)
            if user is not None and user.socket is None:
                self._user_gone(user)
        elif kind is TimerKind.WAITER_GRACE:
            waiter = self._waiters.get(subject)
            if waiter is not None and waiter.socket is None:
                self._waiter_gone(waiter)

    def _idle_check(self, socket: str, last_activity: float | None) -> None:
        owner = self._sockets.get(socket)
        if owner is None:
            return
        key = TimerKey.idle(socket)
        seen = last_activity if last_activity is not None else float("-inf")
        warned = self._idle_warned.get(socket)
        if warned is not None and seen > warned:
            del self._idle_warned[socket]
            warned = None
        if warned is None:
            due = seen + self.idle_timeout
            if due > self._now:
                self._emit(c.StartTimer(key, due))
                return
            self._idle_warned[socket] = self._now
            self._emit(
                c.Send(socket, "idle", None, {"message": IDLE_MESSAGE}),
                c.StartTimer(key, self._now + self.idle_grace),
            )
            return
        user = self._users[owner[1]]
        if user.conversation is not None and user.socket == socket:
            self._end(user.conversation, CloseReason.USER_IDLE)
        else:
            if user.in_queue and user.socket == socket:
                self._dequeue(user)
            self._emit(c.Send(socket, "disconnected"))
        self._emit(c.Close(socket, Hangup.IDLE))
        self._assign()
        self._announce_queue()

    # -- accounts changed outside the chat (the admin API) ---------------------
    def _account_changed(self, ev: e.AccountChanged) -> None:
        """Every node forgets the account; on `hang_up` its sockets close, and it is gone.

        Gone at once, without the resume grace: a disabled user leaves the
        queue or its conversation ends (the waiter hears `disconnected`); a
        disabled waiter's users go back to the front of the queue.
        """
        account = ev.account_id
        self._emit(c.Forget(account, ev.hang_up))
        if not ev.hang_up:
            return
        for socket, (role, owner) in list(self._sockets.items()):
            if owner != account:
                continue
            del self._sockets[socket]
            if role is Role.USER:
                self._idle_warned.pop(socket, None)
                self._emit(c.CancelTimer(TimerKey.idle(socket)))
            self._emit(c.Close(socket, Hangup.REVOKED))
        user = self._users.get(account)
        if user is not None:
            holds = user.in_queue or user.conversation is not None
            if user.socket is None and holds:  # its resume grace is running
                self._emit(c.CancelTimer(TimerKey.user_grace(account)))
            user.socket = None
            user.sockets.clear()
            if holds:
                self._user_gone(user)
            else:
                del self._users[account]
        waiter = self._waiters.get(account)
        if waiter is not None:
            if waiter.socket is None:  # its resume grace is running
                self._emit(c.CancelTimer(TimerKey.waiter_grace(account)))
            waiter.socket = None
            self._waiter_gone(waiter)

    # -- rebuilding from storage ----------------------------------------------
    def _queued_restored(self, ev: e.QueuedRestored) -> None:
        user = self._restored_user(ev.profile)
        user.queued_at = ev.queued_at
        user.seq = self._next_seq()
        self._enqueue(user)

    def _conversation_restored(self, ev: e.ConversationRestored) -> None:
        user = self._restored_user(ev.user)
        waiter = self._waiters.get(ev.waiter.id)
        if waiter is None:
            waiter = _Waiter(ev.waiter, None, "", ev.opened_at)
            self._waiters[ev.waiter.id] = waiter
            grace_at = self._now + self.resume_grace
            self._emit(c.StartTimer(TimerKey.waiter_grace(ev.waiter.id), grace_at))
        user.queued_at = ev.queued_at if ev.queued_at is not None else ev.opened_at
        user.seq = self._next_seq()
        conv = _Conversation(ev.conversation_id, ev.user.id, ev.waiter.id, ev.opened_at)
        user.conversation = conv
        waiter.users.append(ev.user.id)

    def _restored_user(self, profile: Profile) -> _User:
        user = _User(profile, None, "")
        self._users[profile.id] = user
        self._emit(c.StartTimer(TimerKey.user_grace(profile.id), self._now + self.resume_grace))
        return user

    # -- the mechanics ----------------------------------------------------------
    def _assign(self) -> None:
        """Serve queued, attached users while some ready waiter has room."""
        for _, _, uid in list(self._queue):
            user = self._users[uid]
            if user.socket is None:
                continue
            waiter = self._pick_waiter()
            if waiter is None:
                return
            self._open(user, waiter)

    def _pick_waiter(self) -> _Waiter | None:
        best: _Waiter | None = None
        for w in self._waiters.values():
            if not w.ready or w.socket is None or len(w.users) >= self.capacity:
                continue
            if best is None or (len(w.users), w.last_assigned) < (
                len(best.users),
                best.last_assigned,
            ):
                best = w
        return best

    def _open(self, user: _User, waiter: _Waiter, transferred_from: str | None = None) -> None:
        if user.in_queue:
            self._dequeue(user, served=True)
        conv = _Conversation(self._new_id(), user.profile.id, waiter.profile.id, self._now)
        user.conversation = conv
        waiter.users.append(user.profile.id)
        waiter.last_assigned = self._now
        arrival = user.queued_at if user.queued_at is not None else self._now
        self._emit(
            c.OpenConversation(
                conv.id, conv.user_id, conv.waiter_id, self._now, arrival, transferred_from
            ),
            _route(conv, user, waiter),
        )
        self._send_connect_success(user, waiter)
        assert waiter.socket is not None
        self._emit(
            c.Send(
                waiter.socket,
                "new_connection",
                user.last_socket,
                user.profile.as_payload(uuid=user.last_socket),
            )
        )

    def _end(
        self,
        conv: _Conversation,
        reason: CloseReason,
        *,
        rate: int | None = None,
        notify_user: bool = True,
        forget: bool = True,
    ) -> None:
        """Close a conversation; `forget` drops a detached user that has nothing left."""
        user = self._users[conv.user_id]
        waiter = self._waiters[conv.waiter_id]
        user.conversation = None
        waiter.users.remove(user.profile.id)
        self._emit(c.CloseConversation(conv.id, reason, self._now, rate), c.Unroute(conv.id))
        if notify_user and user.socket is not None:
            self._emit(c.Send(user.socket, "disconnected", waiter.last_socket or None))
        if waiter.socket is not None:
            self._emit(c.Send(waiter.socket, "disconnected", user.last_socket or None))
        if forget and user.socket is None and not user.in_queue:
            del self._users[user.profile.id]

    def _user_gone(self, user: _User) -> None:
        if user.in_queue:
            self._dequeue(user)
            del self._users[user.profile.id]
            self._announce_queue()
        elif user.conversation is not None:
            self._end(user.conversation, CloseReason.USER_GONE)
            self._assign()
            self._announce_queue()

    def _waiter_gone(self, waiter: _Waiter) -> None:
        """Send the waiter's users back to the queue, ahead of everyone who came after them.

        Each attached user first hears `disconnected` from the waiter's old
        socket, as in the original system, then its place (or a new waiter).
        """
        del self._waiters[waiter.profile.id]
        for uid in list(waiter.users):
            user = self._users[uid]
            conv = user.conversation
            assert conv is not None
            user.conversation = None
            self._emit(
                c.CloseConversation(conv.id, CloseReason.WAITER_GONE, self._now),
                c.Unroute(conv.id),
            )
            if user.socket is not None:
                self._emit(c.Send(user.socket, "disconnected", waiter.last_socket or None))
            if user.queued_at is None:
                user.queued_at = conv.opened_at
                user.seq = self._next_seq()
            self._enqueue(user)
            self._emit(c.Enqueue(uid, user.queued_at))
        self._announce_queue()
        self._assign()
        self._announce_queue()

    def _enqueue(self, user: _User) -> None:
        assert user.queued_at is not None
        bisect.insort(self._queue, (user.queued_at, user.seq, user.profile.id))
        user.in_queue = True

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def _dequeue(self, user: _User, *, served: bool = False) -> None:
        assert user.queued_at is not None
        self._queue.remove((user.queued_at, user.seq, user.profile.id))
        user.in_queue = False
        self._announced.pop(user.profile.id, None)
        self._emit(c.Dequeue(user.profile.id, served, self._now))

    def _location(self, user_id: str) -> int:
        for i, (_, _, uid) in enumerate(self._queue):
            if uid == user_id:
                return i
        raise NotFound(f"user {user_id!r} is not queued")

    def _announce_queue(self) -> None:
        """Send `connect_queue` to every attached queued user whose place changed."""
        for i, (_, _, uid) in enumerate(self._queue):
            user = self._users[uid]
            if user.socket is not None and self._announced.get(uid) != i:
                self._send_location(user, i)

    def _send_location(self, user: _User, location: int) -> None:
        assert user.socket is not None
        self._announced[user.profile.id] = location
        self._emit(c.Send(user.socket, "connect_queue", None, {"location": location}))

    def _send_connect_success(self, user: _User, waiter: _Waiter) -> None:
        if user.socket is None:
            return
        self._emit(
            c.Send(
                user.socket,
                "connect_success",
                waiter.socket,
                waiter.profile.as_payload(uuid=waiter.socket),
            )
        )

    def _user_by_socket(self, socket: str) -> _User:
        owner = self._sockets.get(socket)
        if owner is None or owner[0] is not Role.USER:
            raise NotFound("not an authenticated user socket")
        return self._users[owner[1]]

    def _waiter_by_socket(self, socket: str) -> _Waiter:
        owner = self._sockets.get(socket)
        if owner is None or owner[0] is not Role.WAITER:
            raise NotFound("not an authenticated waiter socket")
        return self._waiters[owner[1]]

    def _conversation_of(self, waiter: _Waiter, user_socket: str) -> _Conversation:
        owner = self._sockets.get(user_socket)
        user = self._users.get(owner[1]) if owner and owner[0] is Role.USER else None
        if user is None:
            user = next(
                (self._users[u] for u in waiter.users if self._users[u].last_socket == user_socket),
                None,
            )
        if user is None or user.conversation is None:
            raise NotPermitted(f"{user_socket!r} is not one of your users")
        if user.conversation.waiter_id != waiter.profile.id:
            raise NotPermitted(f"{user_socket!r} is not one of your users")
        return user.conversation

    def _emit(self, *commands: c.Command) -> None:
        self._out.extend(commands)


def _route(conv: _Conversation, user: _User, waiter: _Waiter) -> c.Route:
    return c.Route(
        conv.id,
        user.profile.id,
        user.last_socket or None,
        waiter.profile.id,
        waiter.last_socket or None,
    )


_HANDLERS: dict[type, Callable[[Switchboard, object], None]] = {
    e.UserAuthed: Switchboard._user_authed,  # type: ignore[dict-item]
    e.UserConnect: Switchboard._user_connect,  # type: ignore[dict-item]
    e.UserDisconnect: Switchboard._user_disconnect,  # type: ignore[dict-item]
    e.UserRate: Switchboard._user_rate,  # type: ignore[dict-item]
    e.WaiterAuthed: Switchboard._waiter_authed,  # type: ignore[dict-item]
    e.WaiterReady: Switchboard._waiter_ready,  # type: ignore[dict-item]
    e.WaiterUnready: Switchboard._waiter_unready,  # type: ignore[dict-item]
    e.WaiterEnd: Switchboard._waiter_end,  # type: ignore[dict-item]
    e.WaiterTransfer: Switchboard._waiter_transfer,  # type: ignore[dict-item]
    e.SocketClosed: Switchboard._socket_closed,  # type: ignore[dict-item]
    e.TimerFired: Switchboard._timer_fired,  # type: ignore[dict-item]
    e.QueuedRestored: Switchboard._queued_restored,  # type: ignore[dict-item]
    e.ConversationRestored: Switchboard._conversation_restored,  # type: ignore[dict-item]
    e.AccountChanged: Switchboard._account_changed,  # type: ignore[dict-item]
}
