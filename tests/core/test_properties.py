"""Stateful property tests: random desks driven through the switchboard.

A hypothesis state machine plays the runtime around a `Switchboard`: it
opens and closes sockets, authenticates users and waiters, sends the
lifecycle frames, keeps the timers the switchboard asks for (firing the due
ones in order when time advances), delivers `SocketClosed` after every
`Close`, and restarts the desk from its own model of the database. It
applies every command to small models (the "database", the routes, the last
frame each socket saw) and checks after every step that those models and
the switchboard agree, and that the rules of protocol sections 4-6 and 10
hold.

A user may have several tabs (sockets) open at once; the newest, or the one
that last sent `connect`, holds its place or conversation, and when it
closes the newest remaining tab takes over. A waiter has one socket: a new
login kicks the older one out.
"""

from __future__ import annotations

import itertools
from collections import Counter
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from kefu.core.commands import (
    CancelTimer,
    Close,
    CloseConversation,
    Command,
    Dequeue,
    Enqueue,
    OpenConversation,
    Route,
    Send,
    StartTimer,
    Unroute,
)
from kefu.core.errors import CoreError, NotAvailable, NotFound, NotPermitted
from kefu.core.events import (
    ConversationRestored,
    Event,
    QueuedRestored,
    SocketClosed,
    TimerFired,
    UserAuthed,
    UserConnect,
    UserDisconnect,
    UserRate,
    WaiterAuthed,
    WaiterEnd,
    WaiterReady,
    WaiterTransfer,
    WaiterUnready,
)
from kefu.core.model import CloseReason, Hangup, Profile, TimerKey, TimerKind
from kefu.core.switchboard import Switchboard

CAPACITY = 2
IDLE_TIMEOUT = 100.0
IDLE_GRACE = 10.0
USERS = [Profile(f"u{i}", f"user{i}") for i in range(6)]
WAITERS = [Profile(f"w{i}", f"waiter{i}", f"Waiter {i}") for i in range(3)]
PROFILES = {p.id: p for p in USERS + WAITERS}

SETTINGS = settings(
    max_examples=200,
    stateful_step_count=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


class DeskMachine(RuleBasedStateMachine):
    RESUME_GRACE = 0.0

    def __init__(self) -> None:
        super().__init__()
        self.now = 0.0
        self.conv_ids = itertools.count(1)
        self.socket_ids = itertools.count(1)
        self.sb = self._new_board()
        # the transport
        self.live: dict[str, tuple[str, str]] = {}  # open authenticated socket -> (role, account)
        self.tabs: dict[str, list[str]] = {}  # user id -> its open sockets, oldest first
        self.user_socket: dict[str, str] = {}  # user id -> the open socket holding its state
        self.waiter_socket: dict[str, str] = {}  # waiter id -> its open socket
        self.user_last_socket: dict[str, str] = {}  # user id -> last socket (open or not)
        self.activity: dict[str, float] = {}  # socket -> when it last sent a frame
        self.timers: dict[tuple[str, str], float] = {}
        self.ready: set[str] = set()  # waiter ids that said `ready` (and were not forgotten)
        # the "database"
        self.db_queue: dict[str, float] = {}  # user id -> queued_at
        self.db_convs: dict[str, OpenConversation] = {}
        self.arrival: dict[str, float] = {}  # user id -> first arrival of its current stay
        # what the message path and the clients were told
        self.routes: dict[str, Route] = {}
        self.location: dict[str, int] = {}  # user socket -> last connect_queue location
        self.partner: dict[str, str | None] = {}  # user socket -> `from` of last connect_success
        self.announced: dict[tuple[str, str], str] = {}  # (waiter socket, user id) -> uuid

    def _new_board(self) -> Switchboard:
        return Switchboard(
            capacity=CAPACITY,
            idle_timeout=IDLE_TIMEOUT,
            idle_grace=IDLE_GRACE,
            resume_grace=self.RESUME_GRACE,
            new_id=lambda: f"c{next(self.conv_ids)}",
        )

    # -- driving ----------------------------------------------------------------
    def tick(self) -> None:
        """Every frame gets its own instant, so arrivals are strictly ordered."""
        self.now += 1.0

    def fire(self, event: Event, *, sender: str | None = None) -> list[Command] | type[CoreError]:
        """Hand one event to the switchboard, check and apply its commands.

        Returns the commands, or the type of the `CoreError` that refused the
        event (after checking that the refusal changed nothing).
        """
        if sender is not None:
            self.activity[sender] = self.now  # any frame resets the idle clock
        before = self.snapshot()
        try:
            out = self.sb.handle(event, self.now)
        except CoreError as exc:
            assert self.snapshot() == before, f"{event} was refused but changed the state"
            return type(exc)
        if isinstance(event, WaiterReady):
            self.ready.add(self.live[event.socket][1])
        elif isinstance(event, WaiterUnready):
            self.ready.discard(self.live[event.socket][1])
        closed = self.apply(event, out)
        self.ready &= set(self.sb.waiter_load())  # a forgotten waiter is not ready any more
        for socket, role in closed:  # the runtime reports each close back
            # an idle user has nothing left; a kicked-out waiter socket holds nothing
            expected = [CancelTimer(TimerKey.idle(socket))] if role == "user" else []
            assert self.fire(SocketClosed(socket)) == expected
        return out

    def snapshot(self) -> tuple[Any, ...]:
        sb = self.sb
        return sb.queue(), sb.conversations(), sb.waiter_load(), sb.status()

    def open_socket(self, role: str, account: str) -> str:
        socket = f"{'us' if role == 'user' else 'ws'}{next(self.socket_ids)}"
        self.live[socket] = (role, account)
        if role == "user":
            self.tabs.setdefault(account, []).append(socket)
            self.attach(account, socket)
        else:
            self.waiter_socket[account] = socket
        return socket

    def attach(self, uid: str, socket: str) -> None:
        self.user_socket[uid] = socket
        self.user_last_socket[uid] = socket

    def drop_socket(self, socket: str) -> None:
        role, account = self.live.pop(socket)
        if role == "user":
            tabs = self.tabs[account]
            tabs.remove(socket)
            if self.user_socket[account] == socket:
                del self.user_socket[account]
                if tabs:  # the newest remaining tab takes over
                    self.attach(account, tabs[-1])
            if not tabs:
                del self.tabs[account]
        elif self.waiter_socket.get(account) == socket:
            del self.waiter_socket[account]
        self.location.pop(socket, None)
        self.partner.pop(socket, None)
        self.activity.pop(socket, None)

    def served_users(self) -> dict[str, str]:
        return {x.user_id: x.waiter_id for x in self.db_convs.values()}

    def loads(self) -> Counter[str]:
        return Counter(x.waiter_id for x in self.db_convs.values())

    # -- the command interpreter ------------------------------------------------
    def apply(self, event: Event, out: list[Command]) -> list[tuple[str, str]]:
        """Check and carry out the commands; return the sockets closed, with their role."""
        closed: list[tuple[str, str]] = []
        transfers = 0
        for i, cmd in enumerate(out):
            if isinstance(cmd, Send):
                assert cmd.socket in self.live, f"{cmd} goes to a closed or unknown socket"
                payload = cmd.payload
                if cmd.type == "connect_queue":
                    assert self.live[cmd.socket][0] == "user"
                    self.location[cmd.socket] = payload["location"]
                elif cmd.type == "connect_success":
                    assert self.live[cmd.socket][0] == "user"
                    self.partner[cmd.socket] = cmd.frm
                elif cmd.type == "new_connection":
                    assert self.live[cmd.socket][0] == "waiter"
                    assert payload["uuid"] == cmd.frm
                    self.announced[(cmd.socket, payload["id"])] = payload["uuid"]
            elif isinstance(cmd, Close):
                assert cmd.socket in self.live, f"{cmd} of a closed or unknown socket"
                if isinstance(event, WaiterAuthed):
                    assert cmd.why is Hangup.KICKOUT and out[i - 1] == Send(cmd.socket, "kickout")
                else:
                    assert isinstance(event, TimerFired) and cmd.why is Hangup.IDLE
                closed.append((cmd.socket, self.live[cmd.socket][0]))
                self.drop_socket(cmd.socket)
            elif isinstance(cmd, Enqueue):
                uid = cmd.user_id
                assert uid not in self.db_queue, f"{cmd}: already queued"
                assert uid not in self.served_users(), f"{cmd}: in a conversation"
                if isinstance(event, UserConnect):  # a fresh arrival
                    assert cmd.queued_at == self.now
                    self.arrival[uid] = cmd.queued_at
                else:  # back from a waiter that left: with its original arrival
                    assert cmd.queued_at == self.arrival[uid], f"{cmd} lost the arrival"
                self.db_queue[uid] = cmd.queued_at
            elif isinstance(cmd, Dequeue):
                uid = cmd.user_id
                assert uid in self.db_queue, f"{cmd}: not queued"
                nxt = out[i + 1] if i + 1 < len(out) else None
                if isinstance(nxt, OpenConversation) and nxt.user_id == uid:
                    # an assignment: first come, first served among attached users
                    attached = [u for u in self.queue_order() if u in self.user_socket]
                    assert attached[:1] == [uid], f"{uid} served before {attached}"
                del self.db_queue[uid]
            elif isinstance(cmd, OpenConversation):
                uid, wid = cmd.user_id, cmd.waiter_id
                assert cmd.conversation_id not in self.db_convs
                assert uid not in self.db_queue and uid not in self.served_users()
                assert cmd.opened_at == self.now
                loads = self.loads()
                assert loads[wid] < CAPACITY, f"{cmd}: {wid} is full"
                assert wid in self.waiter_socket and wid in self.ready, f"{cmd}: {wid} absent"
                if out[i - 1] == Dequeue(uid):  # an assignment: to the least busy
                    room = [
                        w for w in self.ready if w in self.waiter_socket and loads[w] < CAPACITY
                    ]
                    assert loads[wid] == min(loads[w] for w in room)
                else:
                    assert isinstance(event, WaiterTransfer) and transfers == 0
                    transfers += 1
                assert cmd.queued_at == self.arrival[uid], f"{cmd} lost the arrival"
                self.db_convs[cmd.conversation_id] = cmd
            elif isinstance(cmd, CloseConversation):
                assert cmd.conversation_id in self.db_convs, f"{cmd}: not open"
                assert cmd.closed_at == self.now
                assert (cmd.rate is not None) == (cmd.reason is CloseReason.RATED)
                assert out[i + 1 : i + 2] == [Unroute(cmd.conversation_id)], "not unrouted"
                del self.db_convs[cmd.conversation_id]
            elif isinstance(cmd, Route):
                assert cmd.conversation_id in self.db_convs
                conv = self.db_convs[cmd.conversation_id]
                assert (cmd.user_id, cmd.waiter_id) == (conv.user_id, conv.waiter_id)
                self.routes[cmd.conversation_id] = cmd
            elif isinstance(cmd, Unroute):
                assert cmd.conversation_id not in self.db_convs
                # (a restored conversation nobody came back to was never routed)
                self.routes.pop(cmd.conversation_id, None)
            elif isinstance(cmd, StartTimer):
                assert cmd.at >= self.now
                self.timers[cmd.key] = cmd.at
            elif isinstance(cmd, CancelTimer):
                self.timers.pop(cmd.key, None)
            else:  # pragma: no cover
                raise AssertionError(f"unknown command {cmd!r}")
        return closed

    def queue_order(self) -> list[str]:
        """The queue as SQL orders it. Every frame has its own instant here, so no two
        arrivals tie and the tie-break (seq in the store) never matters."""
        return sorted(self.db_queue, key=lambda u: (self.db_queue[u], u))

    # -- users --------------------------------------------------------------------
    def draw_user(self, data: st.DataObject, *, online: bool) -> Profile:
        pool = [u for u in USERS if (u.id in self.tabs) == online]
        return data.draw(st.sampled_from(pool), label="user")

    def draw_tab(self, data: st.DataObject) -> tuple[Profile, str]:
        """An online user and one of its tabs, mostly the one holding its state."""
        user = self.draw_user(data, online=True)
        tabs = st.sampled_from(self.tabs[user.id])
        return user, data.draw(st.just(self.user_socket[user.id]) | tabs, label="tab")

    def away_users(self) -> bool:
        return len(self.tabs) < len(USERS)

    def online_users(self) -> bool:
        return bool(self.tabs)

    def auth_user(self, user: Profile) -> str:
        self.tick()
        socket = self.open_socket("user", user.id)
        out = self.fire(UserAuthed(socket, user), sender=socket)
        assert isinstance(out, list)
        assert out[0] == StartTimer(TimerKey.idle(socket), self.now + IDLE_TIMEOUT)
        return socket

    def connect_user(self, user: Profile, socket: str) -> None:
        self.tick()
        self.attach(user.id, socket)  # the tab that says `connect` holds the state
        assert isinstance(self.fire(UserConnect(socket), sender=socket), list)
        assert user.id in self.db_queue or user.id in self.served_users()

    @precondition(away_users)
    @rule(data=st.data())
    def user_auth(self, data: st.DataObject) -> None:
        self.auth_user(self.draw_user(data, online=False))

    @precondition(away_users)
    @rule(data=st.data())
    def user_arrives(self, data: st.DataObject) -> None:
        """auth then connect, the usual opening."""
        user = self.draw_user(data, online=False)
        self.connect_user(user, self.auth_user(user))

    @precondition(online_users)
    @rule(data=st.data())
    def user_second_tab(self, data: st.DataObject) -> None:
        """The user opens another tab (up to 3); the newest holds its place or conversation."""
        user = self.draw_user(data, online=True)
        if len(self.tabs[user.id]) < 3:
            self.auth_user(user)

    @precondition(online_users)
    @rule(data=st.data())
    def user_connect(self, data: st.DataObject) -> None:
        self.connect_user(*self.draw_tab(data))

    @precondition(online_users)
    @rule(data=st.data())
    def user_disconnect(self, data: st.DataObject) -> None:
        user, socket = self.draw_tab(data)
        holder = self.user_socket[user.id]
        self.tick()
        waiter = self.served_users().get(user.id)
        out = self.fire(UserDisconnect(socket), sender=socket)
        assert isinstance(out, list)
        assert user.id not in self.db_queue and user.id not in self.served_users()
        told = [x for x in out if isinstance(x, Send) and x.socket in self.tabs[user.id]]
        assert [x.type for x in told] == ["disconnected"]
        if waiter is None:
            assert told[0] == Send(socket, "disconnected")
        else:  # the conversation ends for the tab that holds it
            assert told[0].socket == holder
            if waiter in self.waiter_socket:
                assert told[0].frm == self.waiter_socket[waiter]

    @precondition(online_users)
    @rule(data=st.data(), rate=st.integers(1, 5))
    def user_rate(self, data: st.DataObject, rate: int) -> None:
        served = [PROFILES[u] for u in sorted(self.served_users()) if u in self.tabs]
        pool = st.sampled_from(served) if served else st.nothing()
        user = data.draw(pool | st.sampled_from([PROFILES[u] for u in sorted(self.tabs)]))
        socket = data.draw(st.sampled_from(self.tabs[user.id]), label="tab")
        self.tick()
        waiter = self.served_users().get(user.id)
        out = self.fire(UserRate(socket, rate), sender=socket)
        if waiter is None:
            assert out is NotFound
            return
        assert isinstance(out, list)
        ack = out[0]
        assert isinstance(ack, Send)
        assert (ack.socket, ack.type, ack.payload) == (socket, "rate_success", {"rate": rate})
        ws = self.waiter_socket.get(waiter)
        if ws is not None:
            assert ack.frm == ws
            assert out[1] == Send(ws, "rate_user_success", socket, {"rate": rate})
        closes = [x for x in out if isinstance(x, CloseConversation)]
        assert closes[:1] and closes[0].reason is CloseReason.RATED and closes[0].rate == rate

    @precondition(online_users)
    @rule(data=st.data())
    def user_message(self, data: st.DataObject) -> None:
        """A chat frame: the switchboard does not see it, the idle clock does."""
        _, socket = self.draw_tab(data)
        self.tick()
        self.activity[socket] = self.now

    # -- waiters ------------------------------------------------------------------
    def online_waiters(self) -> bool:
        return bool(self.waiter_socket)

    def draw_online_waiter(self, data: st.DataObject) -> tuple[Profile, str]:
        wid = data.draw(st.sampled_from(sorted(self.waiter_socket)), label="waiter")
        return PROFILES[wid], self.waiter_socket[wid]

    def draw_users_of(self, data: st.DataObject, waiter: Profile) -> Profile:
        """Mostly one of the waiter's users, sometimes anyone (to be refused)."""
        mine = sorted(u for u, w in self.served_users().items() if w == waiter.id)
        pool = st.sampled_from([PROFILES[u] for u in mine]) if mine else st.nothing()
        return data.draw(pool | st.sampled_from(USERS), label="user")

    @rule(waiter=st.sampled_from(WAITERS), ready=st.sampled_from([True, True, False]))
    def waiter_auth(self, waiter: Profile, ready: bool) -> None:
        """Log in (kicking out an older socket of the same waiter), maybe say ready."""
        self.tick()
        old = self.waiter_socket.get(waiter.id)
        socket = self.open_socket("waiter", waiter.id)
        assert isinstance(self.fire(WaiterAuthed(socket, waiter), sender=socket), list)
        assert old is None or old not in self.live, "the older socket was not kicked out"
        if ready:
            self.tick()
            out = self.fire(WaiterReady(socket), sender=socket)
            assert isinstance(out, list) and out[0] == Send(socket, "ready")

    @precondition(online_waiters)
    @rule(data=st.data())
    def waiter_ready(self, data: st.DataObject) -> None:
        _, socket = self.draw_online_waiter(data)
        self.tick()
        out = self.fire(WaiterReady(socket), sender=socket)
        assert isinstance(out, list) and out[0] == Send(socket, "ready")

    @precondition(online_waiters)
    @rule(data=st.data())
    def waiter_unready(self, data: st.DataObject) -> None:
        _, socket = self.draw_online_waiter(data)
        self.tick()
        assert self.fire(WaiterUnready(socket), sender=socket) == [Send(socket, "unready")]

    @precondition(online_waiters)
    @rule(data=st.data())
    def waiter_end(self, data: st.DataObject) -> None:
        waiter, socket = self.draw_online_waiter(data)
        user = self.draw_users_of(data, waiter)
        self.tick()
        target = self.user_last_socket.get(user.id, "no-such-socket")
        mine = self.served_users().get(user.id) == waiter.id and user.id in self.user_last_socket
        out = self.fire(WaiterEnd(socket, target), sender=socket)
        if not mine:
            assert out is NotPermitted
            return
        assert isinstance(out, list)
        assert user.id not in self.served_users()
        assert Send(socket, "disconnected", target) in out

    @precondition(online_waiters)
    @rule(data=st.data())
    def waiter_transfer(self, data: st.DataObject) -> None:
        waiter, socket = self.draw_online_waiter(data)
        user = self.draw_users_of(data, waiter)
        takers = [
            PROFILES[w]
            for w in sorted(self.ready)
            if w != waiter.id and w in self.waiter_socket and self.loads()[w] < CAPACITY
        ]
        pool = st.sampled_from(takers) if takers else st.nothing()
        to = data.draw(pool | st.sampled_from(WAITERS), label="to")
        self.tick()
        target = self.user_last_socket.get(user.id, "no-such-socket")
        refusal: type[CoreError] | None = None
        if self.served_users().get(user.id) != waiter.id or user.id not in self.user_last_socket:
            refusal = NotPermitted
        elif to.id not in self.waiter_socket:
            refusal = NotFound
        elif to == waiter or to.id not in self.ready or self.loads()[to.id] >= CAPACITY:
            refusal = NotAvailable
        out = self.fire(WaiterTransfer(socket, target, to.id), sender=socket)
        if refusal is None:
            assert isinstance(out, list)
            assert self.served_users().get(user.id) == to.id
        else:
            assert out is refusal

    # -- sockets, time, restarts --------------------------------------------------
    @rule(data=st.data())
    def close_socket(self, data: st.DataObject) -> None:
        """Any open socket drops; "anon" is one that never authenticated."""
        self.tick()
        socket = data.draw(st.sampled_from(["anon", *sorted(self.live)]), label="socket")
        if socket == "anon":
            assert self.fire(SocketClosed(f"anon{next(self.socket_ids)}")) == []
            return
        self.drop_socket(socket)
        assert isinstance(self.fire(SocketClosed(socket)), list)

    @rule(seconds=st.integers(1, 60))
    def advance(self, seconds: int) -> None:
        """Let time pass, firing every timer that falls due, in order."""
        until = self.now + seconds
        while True:
            due = [(at, key) for key, at in self.timers.items() if at <= until]
            if not due:
                break
            at, key = min(due)
            del self.timers[key]
            self.now = max(self.now, at)
            last = self.activity.get(key.subject) if key.kind is TimerKind.IDLE else None
            assert isinstance(self.fire(TimerFired(key, last)), list)
        self.now = until

    @rule(data=st.data())
    def restart(self, data: st.DataObject) -> None:
        """The server restarts: sockets and memory are lost, the database is kept."""
        self.tick()
        for socket in list(self.live):
            self.drop_socket(socket)
        self.timers.clear()
        self.routes.clear()
        self.announced.clear()
        self.ready.clear()
        self.user_last_socket.clear()
        self.sb = self._new_board()
        restored: list[Event] = [
            QueuedRestored(PROFILES[uid], at) for uid, at in self.db_queue.items()
        ]
        restored += [
            ConversationRestored(
                x.conversation_id,
                PROFILES[x.user_id],
                PROFILES[x.waiter_id],
                x.opened_at,
                x.queued_at,
            )
            for x in self.db_convs.values()
        ]
        for event in data.draw(st.permutations(restored)):
            out = self.fire(event)
            assert isinstance(out, list)
            assert all(isinstance(x, StartTimer) for x in out), out

    # -- invariants ---------------------------------------------------------------
    @invariant()
    def queue_and_conversations_are_consistent(self) -> None:
        queue = self.sb.queue()
        convs = self.sb.conversations()
        load = self.sb.waiter_load()
        served = [u for u, _ in convs.values()]
        assert len(queue) == len(set(queue)), "a user queued twice"
        assert len(served) == len(set(served)), "a user in two conversations"
        assert not set(queue) & set(served), "a user both queued and served"
        assert all(n <= CAPACITY for n in load.values()), f"over capacity: {load}"
        assert Counter(w for _, w in convs.values()) == +Counter(load)
        assert {w for _, w in convs.values()} <= set(load)

    @invariant()
    def database_reproduces_the_switchboard(self) -> None:
        assert self.sb.queue() == self.queue_order()
        assert self.sb.conversations() == {
            x.conversation_id: (x.user_id, x.waiter_id) for x in self.db_convs.values()
        }

    @invariant()
    def queue_is_in_arrival_order(self) -> None:
        queue = self.sb.queue()
        times = [self.db_queue[u] for u in queue]
        assert times == sorted(times)
        for uid in queue:
            assert self.db_queue[uid] == self.arrival[uid]

    @invariant()
    def queued_users_know_their_place(self) -> None:
        for index, uid in enumerate(self.sb.queue()):
            socket = self.user_socket.get(uid)
            if socket is not None:
                assert self.location.get(socket) == index, f"{uid} at {index}, told otherwise"

    @invariant()
    def nobody_waits_while_a_ready_waiter_has_room(self) -> None:
        if any(u in self.user_socket for u in self.sb.queue()):
            load = self.sb.waiter_load()
            for w in self.ready:
                if w in self.waiter_socket:
                    assert load[w] >= CAPACITY, f"{w} has room while attached users wait"

    @invariant()
    def routes_and_clients_agree_with_the_conversations(self) -> None:
        convs = self.sb.conversations()
        assert set(self.routes) <= set(convs), "a route outlived its conversation"
        for cid, (uid, wid) in convs.items():
            us, ws = self.user_socket.get(uid), self.waiter_socket.get(wid)
            if us is None and ws is None:
                continue  # restored, nobody back yet: nothing to route
            route = self.routes[cid]
            if us is not None:
                assert route.user_socket == us
            if ws is not None:
                assert route.waiter_socket == ws
            if us is not None and ws is not None:
                assert self.partner.get(us) == ws, "the user does not know its waiter's socket"
                assert self.announced.get((ws, uid)) == us, "the waiter does not know the user"

    @invariant()
    def status_matches_the_sockets(self) -> None:
        status = self.sb.status()
        load = self.sb.waiter_load()
        assert status.pending_num == len(self.db_queue)
        assert status.online_user_num == sum(1 for r, _ in self.live.values() if r == "user")
        assert status.online_waiter_num == len(self.waiter_socket)
        assert set(status.matchers) == set(self.waiter_socket.values())
        for wid, ws in self.waiter_socket.items():
            # each of its users by last known socket; one restored and not back has none
            mine = [u for u, w in self.served_users().items() if w == wid]
            assert len(mine) == load[wid]
            known = [self.user_last_socket[u] for u in mine if u in self.user_last_socket]
            assert sorted(status.matchers[ws]) == sorted(known)

    @invariant()
    def the_right_timers_are_running(self) -> None:
        for socket, (role, _) in self.live.items():
            if role == "user":
                assert TimerKey.idle(socket) in self.timers, f"no idle timer for {socket}"
        for uid in [*self.db_queue, *self.served_users()]:
            if uid not in self.user_socket:
                assert TimerKey.user_grace(uid) in self.timers, f"{uid} away with no grace"
        for wid in self.sb.waiter_load():
            if wid not in self.waiter_socket:
                assert TimerKey.waiter_grace(wid) in self.timers, f"{wid} away with no grace"


class DeskWithoutGrace(DeskMachine):
    """KEFU_RESUME_GRACE=0, as in the original system: a dropped socket is gone at once."""

    RESUME_GRACE = 0.0


class DeskWithGrace(DeskMachine):
    RESUME_GRACE = 15.0


TestDeskWithoutGrace = DeskWithoutGrace.TestCase
TestDeskWithoutGrace.settings = SETTINGS
TestDeskWithGrace = DeskWithGrace.TestCase
TestDeskWithGrace.settings = SETTINGS
