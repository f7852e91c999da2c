"""Scripted tests of the switchboard: events in, the exact commands out.

Each test replays a short script with explicit `now` values and a
deterministic `new_id` (conversation ids "c1", "c2", ...), and compares the
whole command list. Section numbers refer to /work/shared/protocol.md.

The tests at the end pin the fixes of bugs these tests found in the
switchboard (a second tab of a user, equal arrival times, the arrival lost
over a restart, an unknown socket named as '').
"""

from __future__ import annotations

import itertools
from typing import Any

import pytest

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
from kefu.core.model import CloseReason, Hangup, Profile, TimerKey
from kefu.core.switchboard import IDLE_MESSAGE, Status, Switchboard

IDLE_TIMEOUT = 600.0
IDLE_GRACE = 60.0
GRACE = 60.0

W1 = Profile("w1", "wendy", "Wendy", "https://cdn.example/w1.png")
W2 = Profile("w2", "walter")


def user(n: int) -> Profile:
    return Profile(f"u{n}", f"user{n}", f"User {n}" if n % 2 else None)


def board(*, capacity: int = 5, resume_grace: float = 0.0) -> Switchboard:
    ids = itertools.count(1)
    return Switchboard(
        capacity=capacity,
        idle_timeout=IDLE_TIMEOUT,
        idle_grace=IDLE_GRACE,
        resume_grace=resume_grace,
        new_id=lambda: f"c{next(ids)}",
    )


# -- script helpers (their output is not under test) --------------------------


def auth_user(sb: Switchboard, n: int, now: float = 0.0, socket: str | None = None) -> str:
    socket = socket or f"us{n}"
    sb.handle(UserAuthed(socket, user(n)), now)
    return socket


def connect_user(sb: Switchboard, n: int, now: float) -> list[Command]:
    """Authenticate user n on socket `us<n>` and send `connect`; return the connect's output."""
    auth_user(sb, n, now)
    return sb.handle(UserConnect(f"us{n}"), now)


def waiter_in(
    sb: Switchboard, profile: Profile, socket: str, now: float = 0.0, *, ready: bool = True
) -> list[Command]:
    sb.handle(WaiterAuthed(socket, profile), now)
    return sb.handle(WaiterReady(socket), now) if ready else []


def snapshot(sb: Switchboard) -> tuple[Any, ...]:
    return sb.queue(), sb.conversations(), sb.waiter_load(), sb.status()


def refused(sb: Switchboard, event: Event, now: float, error: type[CoreError]) -> None:
    """The event raises `error` and leaves the switchboard exactly as it was."""
    before = snapshot(sb)
    with pytest.raises(error):
        sb.handle(event, now)
    assert snapshot(sb) == before


# -- expected-command helpers -------------------------------------------------


def location(socket: str, n: int) -> Send:
    return Send(socket, "connect_queue", None, {"location": n})


def served(
    conv: str,
    n: int,
    waiter: Profile,
    ws: str,
    now: float,
    *,
    arrived: float,
    socket: str | None = None,
    dequeue: bool = True,
) -> list[Command]:
    """What assigning user n (on `us<n>` unless `socket`), who queued at `arrived`, emits."""
    u = user(n)
    s = socket or f"us{n}"
    head: list[Command] = [Dequeue(u.id)] if dequeue else []
    return [
        *head,
        OpenConversation(conv, u.id, waiter.id, now, arrived),
        Route(conv, u.id, s, waiter.id, ws),
        Send(s, "connect_success", ws, waiter.as_payload(uuid=ws)),
        Send(ws, "new_connection", s, u.as_payload(uuid=s)),
    ]


def ended(
    conv: str,
    reason: CloseReason,
    now: float,
    user_socket: str,
    waiter_socket: str,
    rate: int | None = None,
) -> list[Command]:
    """A conversation closed with both sides attached: both get `disconnected`."""
    return [
        CloseConversation(conv, reason, now, rate),
        Unroute(conv),
        Send(user_socket, "disconnected", waiter_socket),
        Send(waiter_socket, "disconnected", user_socket),
    ]


def opened_with(commands: list[Command]) -> list[tuple[str, str]]:
    """(user id, waiter id) of every conversation opened, in order."""
    return [(x.user_id, x.waiter_id) for x in commands if isinstance(x, OpenConversation)]


# -- user: auth, connect, queue (4.1, 4.2, 6) ---------------------------------


def test_user_auth_starts_the_idle_timer() -> None:
    sb = board()
    assert sb.handle(UserAuthed("us1", user(1)), 5.0) == [StartTimer(TimerKey.idle("us1"), 605.0)]
    assert sb.account_of("us1") == ("user", "u1")


def test_connect_without_a_waiter_queues_at_location_zero() -> None:
    sb = board()
    auth_user(sb, 1, 0.0)
    assert sb.handle(UserConnect("us1"), 10.0) == [
        Enqueue("u1", 10.0),
        Send("us1", "connect_queue", None, {"location": 0}),
    ]
    assert sb.queue() == ["u1"]
    assert sb.status().pending_num == 1


def test_connect_again_while_queued_repeats_the_place_without_a_second_entry() -> None:
    sb = board()
    connect_user(sb, 1, 1.0)
    connect_user(sb, 2, 2.0)
    assert sb.handle(UserConnect("us2"), 3.0) == [location("us2", 1)]
    assert sb.queue() == ["u1", "u2"]


def test_events_from_unauthenticated_or_wrong_role_sockets_are_refused() -> None:
    sb = board()
    auth_user(sb, 1)
    waiter_in(sb, W1, "ws1", ready=False)
    refused(sb, UserConnect("nobody"), 1.0, NotFound)
    refused(sb, UserConnect("ws1"), 1.0, NotFound)
    refused(sb, WaiterReady("us1"), 1.0, NotFound)
    refused(sb, WaiterUnready("nobody"), 1.0, NotFound)
    refused(sb, UserRate("ws1", 5), 1.0, NotFound)
    assert sb.handle(SocketClosed("nobody"), 1.0) == []


def test_waiter_auth_then_ready_acks_then_assigns_the_queued_user() -> None:
    sb = board()
    connect_user(sb, 1, 1.0)
    assert sb.handle(WaiterAuthed("ws1", W1), 2.0) == []
    assert sb.handle(WaiterReady("ws1"), 3.0) == [
        Send("ws1", "ready"),
        Dequeue("u1"),
        OpenConversation("c1", "u1", "w1", 3.0, 1.0),
        Route("c1", "u1", "us1", "w1", "ws1"),
        Send(
            "us1",
            "connect_success",
            "ws1",
            {
                "id": "w1",
                "username": "wendy",
                "nickname": "Wendy",
                "avatar": "https://cdn.example/w1.png",
                "uuid": "ws1",
            },
        ),
        Send(
            "ws1",
            "new_connection",
            "us1",
            {"id": "u1", "username": "user1", "nickname": "User 1", "avatar": "", "uuid": "us1"},
        ),
    ]
    assert sb.queue() == []
    assert sb.conversations() == {"c1": ("u1", "w1")}


def test_ready_with_an_empty_queue_only_acks_and_ready_twice_is_harmless() -> None:
    sb = board()
    sb.handle(WaiterAuthed("ws1", W1), 0.0)
    assert sb.handle(WaiterReady("ws1"), 1.0) == [Send("ws1", "ready")]
    assert sb.handle(WaiterReady("ws1"), 2.0) == [Send("ws1", "ready")]


def test_connect_with_a_ready_waiter_is_served_at_once() -> None:
    sb = board()
    waiter_in(sb, W1, "ws1")
    auth_user(sb, 1, 1.0)
    assert sb.handle(UserConnect("us1"), 2.0) == [
        Enqueue("u1", 2.0),
        *served("c1", 1, W1, "ws1", 2.0, arrived=2.0),
    ]
    # already connected: connect_success again, nothing else
    assert sb.handle(UserConnect("us1"), 3.0) == [
        Send("us1", "connect_success", "ws1", W1.as_payload(uuid="ws1")),
    ]
    assert sb.conversations() == {"c1": ("u1", "w1")}


def test_seven_users_one_waiter_of_capacity_one() -> None:
    sb = board(capacity=1)
    waiter_in(sb, W1, "ws1")
    assert connect_user(sb, 1, 1.0) == [
        Enqueue("u1", 1.0),
        *served("c1", 1, W1, "ws1", 1.0, arrived=1.0),
    ]
    for n in range(2, 8):
        # each newcomer gets its place; nobody ahead of it moved, so nobody else hears
        assert connect_user(sb, n, float(n)) == [
            Enqueue(f"u{n}", float(n)),
            location(f"us{n}", n - 2),
        ]
    assert sb.queue() == ["u2", "u3", "u4", "u5", "u6", "u7"]

    # the served user leaves: u2 is served, everyone behind moves up by one
    assert sb.handle(UserDisconnect("us1"), 10.0) == [
        *ended("c1", CloseReason.USER_LEFT, 10.0, "us1", "ws1"),
        *served("c2", 2, W1, "ws1", 10.0, arrived=2.0),
        location("us3", 0),
        location("us4", 1),
        location("us5", 2),
        location("us6", 3),
        location("us7", 4),
    ]

    # u5 (place 2) leaves the queue: only those behind it hear a new place
    assert sb.handle(UserDisconnect("us5"), 11.0) == [
        Dequeue("u5"),
        location("us6", 2),
        location("us7", 3),
        Send("us5", "disconnected"),
    ]
    # the last one leaves: nobody's place changed
    assert sb.handle(UserDisconnect("us7"), 12.0) == [Dequeue("u7"), Send("us7", "disconnected")]
    assert sb.queue() == ["u3", "u4", "u6"]


def test_user_disconnect_with_nothing_going_on_just_answers_disconnected() -> None:
    sb = board()
    auth_user(sb, 1)
    assert sb.handle(UserDisconnect("us1"), 1.0) == [Send("us1", "disconnected")]


def test_user_disconnect_while_served_ends_the_conversation_for_both() -> None:
    sb = board()
    waiter_in(sb, W1, "ws1")
    connect_user(sb, 1, 1.0)
    assert sb.handle(UserDisconnect("us1"), 5.0) == ended(
        "c1", CloseReason.USER_LEFT, 5.0, "us1", "ws1"
    )
    assert sb.conversations() == {}
    assert sb.waiter_load() == {"w1": 0}
    # the user is still there and may connect again, as a new arrival
    assert sb.handle(UserConnect("us1"), 6.0) == [
        Enqueue("u1", 6.0),
        *served("c2", 1, W1, "ws1", 6.0, arrived=6.0),
    ]


# -- assignment (6) ------------------------------------------------------------


def test_least_busy_waiter_then_the_oldest_last_assignment() -> None:
    sb = board()
    waiter_in(sb, W1, "ws1", 1.0)
    waiter_in(sb, W2, "ws2", 2.0)
    seen: list[tuple[str, str]] = []
    for n in range(1, 6):
        seen += opened_with(connect_user(sb, n, 10.0 + n))
    assert seen == [
        ("u1", "w1"),  # 0/0: w1 became ready first
        ("u2", "w2"),  # fewest users
        ("u3", "w1"),  # 1/1: w1's last assignment (11) is older than w2's (12)
        ("u4", "w2"),  # fewest users
        ("u5", "w1"),  # 2/2: w1 (13) older than w2 (14)
    ]
    # u1 leaves: w1 2, w2 2; w2's last assignment (14) is now the older one
    sb.handle(UserDisconnect("us1"), 20.0)
    assert opened_with(connect_user(sb, 6, 21.0)) == [("u6", "w2")]
    assert sb.waiter_load() == {"w1": 2, "w2": 3}


def test_tie_goes_to_the_waiter_ready_longest_not_the_first_registered() -> None:
    sb = board()
    sb.handle(WaiterAuthed("ws1", W1), 0.0)
    sb.handle(WaiterAuthed("ws2", W2), 0.0)
    sb.handle(WaiterReady("ws2"), 1.0)
    sb.handle(WaiterReady("ws1"), 2.0)
    assert opened_with(connect_user(sb, 1, 3.0)) == [("u1", "w2")]


def test_capacity_is_respected() -> None:
    sb = board(capacity=2)
    waiter_in(sb, W1, "ws1")
    connect_user(sb, 1, 1.0)
    connect_user(sb, 2, 2.0)
    assert connect_user(sb, 3, 3.0) == [Enqueue("u3", 3.0), location("us3", 0)]
    assert sb.handle(WaiterReady("ws1"), 4.0) == [Send("ws1", "ready")]
    assert sb.waiter_load() == {"w1": 2}
    assert sb.queue() == ["u3"]


def test_one_ready_takes_users_up_to_capacity_in_queue_order() -> None:
    sb = board(capacity=2)
    for n in (1, 2, 3):
        connect_user(sb, n, float(n))
    sb.handle(WaiterAuthed("ws1", W1), 4.0)
    assert sb.handle(WaiterReady("ws1"), 5.0) == [
        Send("ws1", "ready"),
        *served("c1", 1, W1, "ws1", 5.0, arrived=1.0),
        *served("c2", 2, W1, "ws1", 5.0, arrived=2.0),
        location("us3", 0),
    ]


def test_unready_stops_assignment_but_conversations_go_on() -> None:
    sb = board()
    waiter_in(sb, W1, "ws1")
    connect_user(sb, 1, 1.0)
    assert sb.handle(WaiterUnready("ws1"), 2.0) == [Send("ws1", "unready")]
    assert connect_user(sb, 2, 3.0) == [Enqueue("u2", 3.0), location("us2", 0)]
    assert sb.conversations() == {"c1": ("u1", "w1")}
    # the conversation ends; the freed place is not filled while unready
    assert sb.handle(UserDisconnect("us1"), 4.0) == ended(
        "c1", CloseReason.USER_LEFT, 4.0, "us1", "ws1"
    )
    assert sb.queue() == ["u2"]
    assert sb.handle(WaiterReady("ws1"), 5.0) == [
        Send("ws1", "ready"),
        *served("c2", 2, W1, "ws1", 5.0, arrived=3.0),
    ]


# -- waiter ends a conversation (5.2) ------------------------------------------


def test_waiter_ends_a_user_and_the_place_is_filled_from_the_queue() -> None:
    sb = board(capacity=1)
    waiter_in(sb, W1, "ws1")
    connect_user(sb, 1, 1.0)
    connect_user(sb, 2, 2.0)
    assert sb.handle(WaiterEnd("ws1", "us1"), 5.0) == [
        *ended("c1", CloseReason.WAITER_ENDED, 5.0, "us1", "ws1"),
        *served("c2", 2, W1, "ws1", 5.0, arrived=2.0),
    ]
    assert sb.conversations() == {"c2": ("u2", "w1")}


def test_waiter_may_not_end_another_waiters_user() -> None:
    sb = board(capacity=1)
    waiter_in(sb, W1, "ws1", 0.0)
    connect_user(sb, 1, 1.0)
    waiter_in(sb, W2, "ws2", 2.0)
    connect_user(sb, 2, 3.0)
    connect_user(sb, 3, 4.0)  # queued
    assert sb.conversations() == {"c1": ("u1", "w1"), "c2": ("u2", "w2")}
    refused(sb, WaiterEnd("ws1", "us2"), 5.0, NotPermitted)
    refused(sb, WaiterEnd("ws1", "us3"), 5.0, NotPermitted)  # queued, nobody's
    refused(sb, WaiterEnd("ws1", "no-such-socket"), 5.0, NotPermitted)
    refused(sb, WaiterEnd("us1", "us1"), 5.0, NotFound)  # a user socket is no waiter
    # the rightful waiter still can
    assert sb.handle(WaiterEnd("ws2", "us2"), 6.0) == [
        *ended("c2", CloseReason.WAITER_ENDED, 6.0, "us2", "ws2"),
        *served("c3", 3, W2, "ws2", 6.0, arrived=4.0),
    ]


# -- kickout (5.1, 10) --------------------------------------------------------


def test_second_auth_of_a_waiter_kicks_out_the_old_socket() -> None:
    sb = board()
    waiter_in(sb, W1, "ws1")
    connect_user(sb, 1, 1.0)
    connect_user(sb, 2, 2.0)
    assert sb.handle(WaiterAuthed("ws1b", W1), 5.0) == [
        Send("ws1", "kickout"),
        Close("ws1", Hangup.KICKOUT),
        Route("c1", "u1", "us1", "w1", "ws1b"),
        Send("us1", "connect_success", "ws1b", W1.as_payload(uuid="ws1b")),
        Send(
            "ws1b",
            "new_connection",
            "us1",
            user(1).as_payload(uuid="us1", resumed=True, previous_uuid="ws1"),
        ),
        Route("c2", "u2", "us2", "w1", "ws1b"),
        Send("us2", "connect_success", "ws1b", W1.as_payload(uuid="ws1b")),
        Send(
            "ws1b",
            "new_connection",
            "us2",
            user(2).as_payload(uuid="us2", resumed=True, previous_uuid="ws1"),
        ),
        Send("ws1b", "ready"),  # stays ready
    ]
    # the old socket no longer holds anything: its close is a no-op, it cannot act
    assert sb.handle(SocketClosed("ws1"), 6.0) == []
    refused(sb, WaiterReady("ws1"), 6.0, NotFound)
    assert sb.status().matchers == {"ws1b": ["us1", "us2"]}
    assert sb.conversations() == {"c1": ("u1", "w1"), "c2": ("u2", "w1")}


# -- a waiter's socket drops (6, 10) -------------------------------------------


def test_waiter_socket_closed_without_grace_requeues_its_users_at_the_front() -> None:
    sb = board(capacity=2)
    waiter_in(sb, W1, "ws1")
    connect_user(sb, 1, 1.0)
    connect_user(sb, 2, 2.0)
    connect_user(sb, 3, 3.0)  # queued, place 0
    waiter_in(sb, W2, "ws2", 4.0, ready=False)
    assert sb.handle(SocketClosed("ws1"), 10.0) == [
        CloseConversation("c1", CloseReason.WAITER_GONE, 10.0),
        Unroute("c1"),
        Send("us1", "disconnected", "ws1"),
        Enqueue("u1", 1.0),  # original arrival
        CloseConversation("c2", CloseReason.WAITER_GONE, 10.0),
        Unroute("c2"),
        Send("us2", "disconnected", "ws1"),
        Enqueue("u2", 2.0),
        location("us1", 0),
        location("us2", 1),
        location("us3", 2),
    ]
    assert sb.queue() == ["u1", "u2", "u3"]
    assert sb.waiter_load() == {"w2": 0}
    # another waiter becomes ready and takes them, in their original order
    assert sb.handle(WaiterReady("ws2"), 11.0) == [
        Send("ws2", "ready"),
        *served("c3", 1, W2, "ws2", 11.0, arrived=1.0),
        *served("c4", 2, W2, "ws2", 11.0, arrived=2.0),
        location("us3", 0),
    ]


def test_waiter_socket_closed_users_are_served_at_once_by_another_ready_waiter() -> None:
    sb = board(capacity=2)
    waiter_in(sb, W1, "ws1")
    connect_user(sb, 1, 1.0)
    connect_user(sb, 2, 2.0)
    waiter_in(sb, W2, "ws2", 5.0)
    assert sb.handle(SocketClosed("ws1"), 10.0) == [
        CloseConversation("c1", CloseReason.WAITER_GONE, 10.0),
        Unroute("c1"),
        Send("us1", "disconnected", "ws1"),
        Enqueue("u1", 1.0),
        CloseConversation("c2", CloseReason.WAITER_GONE, 10.0),
        Unroute("c2"),
        Send("us2", "disconnected", "ws1"),
        Enqueue("u2", 2.0),
        location("us1", 0),
        location("us2", 1),
        *served("c3", 1, W2, "ws2", 10.0, arrived=1.0),
        *served("c4", 2, W2, "ws2", 10.0, arrived=2.0),
    ]


def test_requeued_users_keep_arrival_order_not_assignment_order() -> None:
    sb = board(capacity=2)
    waiter_in(sb, W1, "ws1", 0.0)
    waiter_in(sb, W2, "ws2", 0.5)
    connect_user(sb, 1, 1.0)  # -> w1
    connect_user(sb, 2, 2.0)  # -> w2
    # w1 hands u1 (the earlier arrival) to w2: w2 now holds [u2, u1]
    sb.handle(WaiterTransfer("ws1", "us1", "w2"), 3.0)
    assert sb.conversations() == {"c2": ("u2", "w2"), "c3": ("u1", "w2")}
    assert sb.handle(SocketClosed("ws2"), 10.0) == [
        CloseConversation("c2", CloseReason.WAITER_GONE, 10.0),
        Unroute("c2"),
        Send("us2", "disconnected", "ws2"),
        Enqueue("u2", 2.0),
        CloseConversation("c3", CloseReason.WAITER_GONE, 10.0),
        Unroute("c3"),
        Send("us1", "disconnected", "ws2"),
        Enqueue("u1", 1.0),
        location("us1", 0),
        location("us2", 1),
        *served("c4", 1, W1, "ws1", 10.0, arrived=1.0),
        *served("c5", 2, W1, "ws1", 10.0, arrived=2.0),
    ]


def test_requeued_users_go_ahead_of_later_arrivals_already_waiting() -> None:
    sb = board(capacity=1)
    waiter_in(sb, W1, "ws1")
    connect_user(sb, 1, 1.0)  # served
    connect_user(sb, 2, 2.0)  # place 0
    connect_user(sb, 4, 4.0)  # place 1
    sb.handle(UserDisconnect("us1"), 5.0)  # u2 served at 5, u4 place 0
    assert sb.queue() == ["u4"]
    assert sb.handle(SocketClosed("ws1"), 6.0) == [
        CloseConversation("c2", CloseReason.WAITER_GONE, 6.0),
        Unroute("c2"),
        Send("us2", "disconnected", "ws1"),
        Enqueue("u2", 2.0),
        location("us2", 0),
        location("us4", 1),
    ]


# -- resume (10) ----------------------------------------------------------------


def test_served_user_socket_closed_starts_the_grace_and_reauth_resumes() -> None:
    sb = board(resume_grace=GRACE)
    waiter_in(sb, W1, "ws1")
    connect_user(sb, 1, 1.0)
    assert sb.handle(SocketClosed("us1"), 10.0) == [
        CancelTimer(TimerKey.idle("us1")),
        StartTimer(TimerKey.user_grace("u1"), 70.0),
    ]
    # the conversation is kept while the user is away
    assert sb.conversations() == {"c1": ("u1", "w1")}
    assert sb.status() == Status(1, 0, 0, {"ws1": ["us1"]})
    assert sb.handle(UserAuthed("us1b", user(1)), 20.0) == [
        StartTimer(TimerKey.idle("us1b"), 620.0),
        CancelTimer(TimerKey.user_grace("u1")),
        Route("c1", "u1", "us1b", "w1", "ws1"),
        Send("us1b", "connect_success", "ws1", W1.as_payload(uuid="ws1")),
        Send(
            "ws1",
            "new_connection",
            "us1b",
            user(1).as_payload(uuid="us1b", resumed=True, previous_uuid="us1"),
        ),
    ]
    # the grace timer, should it still fire, finds the user back and does nothing
    assert sb.handle(TimerFired(TimerKey.user_grace("u1")), 70.0) == []
    assert sb.conversations() == {"c1": ("u1", "w1")}


def test_queued_user_socket_closed_keeps_its_place_and_gets_it_back() -> None:
    sb = board(resume_grace=GRACE)
    connect_user(sb, 1, 1.0)
    connect_user(sb, 2, 2.0)
    assert sb.handle(SocketClosed("us1"), 5.0) == [
        CancelTimer(TimerKey.idle("us1")),
        StartTimer(TimerKey.user_grace("u1"), 65.0),
    ]
    assert sb.queue() == ["u1", "u2"]
    assert sb.handle(UserAuthed("us1b", user(1)), 10.0) == [
        StartTimer(TimerKey.idle("us1b"), 610.0),
        CancelTimer(TimerKey.user_grace("u1")),
        location("us1b", 0),
    ]


def test_a_detached_queued_user_is_skipped_by_assignment_until_it_returns() -> None:
    sb = board(resume_grace=GRACE)
    connect_user(sb, 1, 1.0)
    connect_user(sb, 2, 2.0)
    sb.handle(SocketClosed("us1"), 3.0)
    sb.handle(WaiterAuthed("ws1", W1), 4.0)
    assert sb.handle(WaiterReady("ws1"), 5.0) == [
        Send("ws1", "ready"),
        *served("c1", 2, W1, "ws1", 5.0, arrived=2.0),
    ]
    assert sb.queue() == ["u1"]
    # u1 returns while w1 has room: its kept place is announced, then it is served
    assert sb.handle(UserAuthed("us1b", user(1)), 6.0) == [
        StartTimer(TimerKey.idle("us1b"), 606.0),
        CancelTimer(TimerKey.user_grace("u1")),
        location("us1b", 0),
        *served("c2", 1, W1, "ws1", 6.0, socket="us1b", arrived=1.0),
    ]


def test_user_with_nothing_kept_is_forgotten_when_its_socket_closes() -> None:
    sb = board(resume_grace=GRACE)
    auth_user(sb, 1)
    assert sb.handle(SocketClosed("us1"), 1.0) == [CancelTimer(TimerKey.idle("us1"))]
    assert sb.status() == Status(0, 0, 0, {})


def test_user_grace_expiry_while_served_ends_the_conversation() -> None:
    sb = board(capacity=1, resume_grace=GRACE)
    waiter_in(sb, W1, "ws1")
    connect_user(sb, 1, 1.0)
    connect_user(sb, 2, 2.0)  # queued
    sb.handle(SocketClosed("us1"), 10.0)
    assert sb.handle(TimerFired(TimerKey.user_grace("u1")), 70.0) == [
        CloseConversation("c1", CloseReason.USER_GONE, 70.0),
        Unroute("c1"),
        Send("ws1", "disconnected", "us1"),
        *served("c2", 2, W1, "ws1", 70.0, arrived=2.0),
    ]
    # forgotten: a later auth starts from scratch
    assert sb.handle(UserAuthed("us1c", user(1)), 80.0) == [
        StartTimer(TimerKey.idle("us1c"), 680.0)
    ]


def test_user_grace_expiry_while_queued_leaves_the_queue() -> None:
    sb = board(resume_grace=GRACE)
    connect_user(sb, 1, 1.0)
    connect_user(sb, 2, 2.0)
    sb.handle(SocketClosed("us1"), 10.0)
    assert sb.handle(TimerFired(TimerKey.user_grace("u1")), 70.0) == [
        Dequeue("u1"),
        location("us2", 0),
    ]
    assert sb.queue() == ["u2"]


def test_user_socket_closed_without_grace_is_gone_at_once() -> None:
    sb = board(capacity=1)
    waiter_in(sb, W1, "ws1")
    connect_user(sb, 1, 1.0)
    connect_user(sb, 2, 2.0)
    connect_user(sb, 3, 3.0)
    assert sb.handle(SocketClosed("us2"), 4.0) == [
        CancelTimer(TimerKey.idle("us2")),
        Dequeue("u2"),
        location("us3", 0),
    ]
    assert sb.handle(SocketClosed("us1"), 5.0) == [
        CancelTimer(TimerKey.idle("us1")),
        CloseConversation("c1", CloseReason.USER_GONE, 5.0),
        Unroute("c1"),
        Send("ws1", "disconnected", "us1"),
        *served("c2", 3, W1, "ws1", 5.0, arrived=3.0),
    ]


def test_waiter_reauth_within_grace_gets_its_conversations_back_and_stays_ready() -> None:
    sb = board(capacity=2, resume_grace=GRACE)
    waiter_in(sb, W1, "ws1")
    connect_user(sb, 1, 1.0)
    connect_user(sb, 2, 2.0)
    connect_user(sb, 3, 3.0)  # queued
    assert sb.handle(SocketClosed("ws1"), 10.0) == [StartTimer(TimerKey.waiter_grace("w1"), 70.0)]
    assert sb.conversations() == {"c1": ("u1", "w1"), "c2": ("u2", "w1")}
    assert sb.status().online_waiter_num == 0
    assert sb.handle(WaiterAuthed("ws1b", W1), 20.0) == [
        CancelTimer(TimerKey.waiter_grace("w1")),
        Route("c1", "u1", "us1", "w1", "ws1b"),
        Send("us1", "connect_success", "ws1b", W1.as_payload(uuid="ws1b")),
        Send(
            "ws1b",
            "new_connection",
            "us1",
            user(1).as_payload(uuid="us1", resumed=True, previous_uuid="ws1"),
        ),
        Route("c2", "u2", "us2", "w1", "ws1b"),
        Send("us2", "connect_success", "ws1b", W1.as_payload(uuid="ws1b")),
        Send(
            "ws1b",
            "new_connection",
            "us2",
            user(2).as_payload(uuid="us2", resumed=True, previous_uuid="ws1"),
        ),
        Send("ws1b", "ready"),
    ]
    assert sb.handle(TimerFired(TimerKey.waiter_grace("w1")), 70.0) == []


def test_detached_waiter_is_not_assigned_and_its_users_may_leave() -> None:
    sb = board(capacity=2, resume_grace=GRACE)
    waiter_in(sb, W1, "ws1")
    connect_user(sb, 1, 1.0)
    sb.handle(SocketClosed("ws1"), 2.0)
    assert connect_user(sb, 2, 3.0) == [Enqueue("u2", 3.0), location("us2", 0)]
    # the user leaves; the waiter is away so only the user hears
    assert sb.handle(UserDisconnect("us1"), 4.0) == [
        CloseConversation("c1", CloseReason.USER_LEFT, 4.0),
        Unroute("c1"),
        Send("us1", "disconnected", "ws1"),
    ]
    assert sb.waiter_load() == {"w1": 0}


def test_waiter_grace_expiry_requeues_its_users() -> None:
    sb = board(capacity=2, resume_grace=GRACE)
    waiter_in(sb, W1, "ws1")
    connect_user(sb, 1, 1.0)
    connect_user(sb, 2, 2.0)
    connect_user(sb, 3, 3.0)
    sb.handle(SocketClosed("ws1"), 10.0)
    assert sb.handle(TimerFired(TimerKey.waiter_grace("w1")), 70.0) == [
        CloseConversation("c1", CloseReason.WAITER_GONE, 70.0),
        Unroute("c1"),
        Send("us1", "disconnected", "ws1"),
        Enqueue("u1", 1.0),
        CloseConversation("c2", CloseReason.WAITER_GONE, 70.0),
        Unroute("c2"),
        Send("us2", "disconnected", "ws1"),
        Enqueue("u2", 2.0),
        location("us1", 0),
        location("us2", 1),
        location("us3", 2),
    ]
    assert sb.waiter_load() == {}
    # coming back later is a fresh start: not ready, no conversations
    assert sb.handle(WaiterAuthed("ws1c", W1), 80.0) == []
    assert sb.handle(WaiterReady("ws1c"), 81.0) == [
        Send("ws1c", "ready"),
        *served("c3", 1, W1, "ws1c", 81.0, arrived=1.0),
        *served("c4", 2, W1, "ws1c", 81.0, arrived=2.0),
        location("us3", 0),
    ]


# -- idle (4.4) -----------------------------------------------------------------


def test_idle_timer_reschedules_when_there_was_activity() -> None:
    sb = board()
    auth_user(sb, 1, 0.0)
    assert sb.handle(TimerFired(TimerKey.idle("us1"), last_activity=100.0), 600.0) == [
        StartTimer(TimerKey.idle("us1"), 700.0)
    ]


def test_idle_warning_then_disconnect_of_a_served_user() -> None:
    sb = board()
    waiter_in(sb, W1, "ws1")
    auth_user(sb, 1, 0.0)
    sb.handle(UserConnect("us1"), 1.0)
    assert sb.handle(TimerFired(TimerKey.idle("us1"), last_activity=1.0), 601.0) == [
        Send("us1", "idle", None, {"message": IDLE_MESSAGE}),
        StartTimer(TimerKey.idle("us1"), 661.0),
    ]
    assert sb.handle(TimerFired(TimerKey.idle("us1"), last_activity=1.0), 661.0) == [
        *ended("c1", CloseReason.USER_IDLE, 661.0, "us1", "ws1"),
        Close("us1", Hangup.IDLE),
    ]
    assert sb.conversations() == {}
    assert sb.handle(SocketClosed("us1"), 661.5) == [CancelTimer(TimerKey.idle("us1"))]
    assert sb.status() == Status(1, 0, 0, {"ws1": []})


def test_activity_after_the_warning_resets_the_idle_clock() -> None:
    sb = board()
    waiter_in(sb, W1, "ws1")
    auth_user(sb, 1, 0.0)
    sb.handle(UserConnect("us1"), 1.0)
    sb.handle(TimerFired(TimerKey.idle("us1"), last_activity=1.0), 601.0)
    assert sb.handle(TimerFired(TimerKey.idle("us1"), last_activity=630.0), 661.0) == [
        StartTimer(TimerKey.idle("us1"), 1230.0)
    ]
    # idle again from 630: warned again, not disconnected outright
    assert sb.handle(TimerFired(TimerKey.idle("us1"), last_activity=630.0), 1230.0) == [
        Send("us1", "idle", None, {"message": IDLE_MESSAGE}),
        StartTimer(TimerKey.idle("us1"), 1290.0),
    ]
    assert sb.conversations() == {"c1": ("u1", "w1")}


def test_idle_user_in_the_queue_leaves_it_and_is_closed() -> None:
    sb = board()
    connect_user(sb, 1, 0.0)
    connect_user(sb, 2, 0.5)
    sb.handle(TimerFired(TimerKey.idle("us1"), last_activity=0.0), 600.0)
    assert sb.handle(TimerFired(TimerKey.idle("us1"), last_activity=0.0), 660.0) == [
        Dequeue("u1"),
        Send("us1", "disconnected"),
        Close("us1", Hangup.IDLE),
        location("us2", 0),
    ]


def test_idle_user_with_nothing_going_on_is_closed() -> None:
    sb = board()
    auth_user(sb, 1, 0.0)
    sb.handle(TimerFired(TimerKey.idle("us1"), last_activity=0.0), 600.0)
    assert sb.handle(TimerFired(TimerKey.idle("us1"), last_activity=0.0), 660.0) == [
        Send("us1", "disconnected"),
        Close("us1", Hangup.IDLE),
    ]


def test_idle_timer_of_a_closed_socket_does_nothing() -> None:
    sb = board()
    auth_user(sb, 1, 0.0)
    sb.handle(SocketClosed("us1"), 1.0)
    assert sb.handle(TimerFired(TimerKey.idle("us1"), last_activity=0.0), 600.0) == []


# -- rate (4.2) -------------------------------------------------------------------


def test_user_rates_and_ends_the_conversation() -> None:
    sb = board(capacity=1)
    waiter_in(sb, W1, "ws1")
    connect_user(sb, 1, 1.0)
    connect_user(sb, 2, 2.0)
    assert sb.handle(UserRate("us1", 4), 10.0) == [
        Send("us1", "rate_success", "ws1", {"rate": 4}),
        Send("ws1", "rate_user_success", "us1", {"rate": 4}),
        *ended("c1", CloseReason.RATED, 10.0, "us1", "ws1", rate=4),
        *served("c2", 2, W1, "ws1", 10.0, arrived=2.0),
    ]
    # nothing left to rate
    refused(sb, UserRate("us1", 5), 11.0, NotFound)


def test_rate_without_a_conversation_is_not_found() -> None:
    sb = board()
    auth_user(sb, 1)
    refused(sb, UserRate("us1", 3), 1.0, NotFound)
    connect_user(sb, 2, 2.0)  # queued, not served
    refused(sb, UserRate("us2", 3), 3.0, NotFound)
    assert sb.queue() == ["u2"]


# -- transfer [ext] (5.2) -----------------------------------------------------------


def test_transfer_to_a_ready_waiter_with_room() -> None:
    sb = board(capacity=2)
    waiter_in(sb, W1, "ws1")
    connect_user(sb, 1, 1.0)
    waiter_in(sb, W2, "ws2", 2.0)
    commands = sb.handle(WaiterTransfer("ws1", "us1", "w2"), 5.0)
    assert commands == [
        CloseConversation("c1", CloseReason.TRANSFERRED, 5.0),
        Unroute("c1"),
        Send("ws1", "disconnected", "us1"),
        OpenConversation("c2", "u1", "w2", 5.0, 1.0),
        Route("c2", "u1", "us1", "w2", "ws2"),
        Send("us1", "connect_success", "ws2", W2.as_payload(uuid="ws2")),
        Send("ws2", "new_connection", "us1", user(1).as_payload(uuid="us1")),
    ]
    # the new conversation names the one it replaces (its webhook event says so)
    assert [c.transferred_from for c in commands if isinstance(c, OpenConversation)] == ["c1"]
    assert sb.conversations() == {"c2": ("u1", "w2")}
    assert sb.waiter_load() == {"w1": 0, "w2": 1}


def test_transfer_refusals_leave_everything_as_it_was() -> None:
    sb = board(capacity=1, resume_grace=GRACE)
    waiter_in(sb, W1, "ws1")
    connect_user(sb, 1, 1.0)  # w1
    waiter_in(sb, W2, "ws2", 2.0)
    connect_user(sb, 2, 3.0)  # w2, now full
    refused(sb, WaiterTransfer("ws1", "us1", "w2"), 4.0, NotAvailable)  # busy
    refused(sb, WaiterTransfer("ws1", "us1", "w1"), 4.0, NotAvailable)  # itself
    refused(sb, WaiterTransfer("ws1", "us1", "w9"), 4.0, NotFound)  # unknown
    refused(sb, WaiterTransfer("ws1", "us2", "w2"), 4.0, NotPermitted)  # not its user
    refused(sb, WaiterTransfer("us1", "us1", "w2"), 4.0, NotFound)  # not a waiter
    sb.handle(UserDisconnect("us2"), 5.0)  # w2 has room again
    sb.handle(WaiterUnready("ws2"), 6.0)
    refused(sb, WaiterTransfer("ws1", "us1", "w2"), 7.0, NotAvailable)  # unready
    sb.handle(WaiterReady("ws2"), 8.0)
    sb.handle(SocketClosed("ws2"), 9.0)  # away, within grace
    refused(sb, WaiterTransfer("ws1", "us1", "w2"), 10.0, NotFound)  # not online
    assert sb.conversations() == {"c1": ("u1", "w1")}


# -- status (7) ---------------------------------------------------------------------


def test_status_counts_and_matchers() -> None:
    sb = board(capacity=2)
    assert sb.status() == Status(0, 0, 0, {})
    waiter_in(sb, W1, "ws1")
    connect_user(sb, 1, 1.0)
    connect_user(sb, 2, 2.0)
    connect_user(sb, 3, 3.0)  # queued
    waiter_in(sb, W2, "ws2", 4.0, ready=False)
    auth_user(sb, 4, 5.0)  # online, not connected
    assert sb.status() == Status(
        online_waiter_num=2,
        online_user_num=4,
        pending_num=1,
        matchers={"ws1": ["us1", "us2"], "ws2": []},
    )


# -- rebuilding from storage (8, 10) -----------------------------------------------


def test_restored_queue_is_ordered_by_queued_at_and_places_come_back() -> None:
    sb = board(resume_grace=GRACE)
    assert sb.handle(QueuedRestored(user(2), 5.0), 100.0) == [
        StartTimer(TimerKey.user_grace("u2"), 160.0)
    ]
    assert sb.handle(QueuedRestored(user(1), 3.0), 100.0) == [
        StartTimer(TimerKey.user_grace("u1"), 160.0)
    ]
    assert sb.queue() == ["u1", "u2"]
    assert sb.status() == Status(0, 0, 2, {})
    assert sb.handle(UserAuthed("us2", user(2)), 110.0) == [
        StartTimer(TimerKey.idle("us2"), 710.0),
        CancelTimer(TimerKey.user_grace("u2")),
        location("us2", 1),
    ]
    # u1 never comes back
    assert sb.handle(TimerFired(TimerKey.user_grace("u1")), 160.0) == [
        Dequeue("u1"),
        location("us2", 0),
    ]
    assert sb.handle(TimerFired(TimerKey.user_grace("u2")), 160.0) == []
    assert sb.queue() == ["u2"]


def test_restored_conversation_comes_back_to_both_sides() -> None:
    sb = board(resume_grace=GRACE)
    assert sb.handle(ConversationRestored("c7", user(1), W1, 2.0), 100.0) == [
        StartTimer(TimerKey.user_grace("u1"), 160.0),
        StartTimer(TimerKey.waiter_grace("w1"), 160.0),
    ]
    assert sb.conversations() == {"c7": ("u1", "w1")}
    # the user first: its waiter is not back yet, so there is no waiter socket to name
    assert sb.handle(UserAuthed("us1", user(1)), 110.0) == [
        StartTimer(TimerKey.idle("us1"), 710.0),
        CancelTimer(TimerKey.user_grace("u1")),
        Route("c7", "u1", "us1", "w1", None),
        Send("us1", "connect_success", None, W1.as_payload(uuid=None)),
    ]
    assert sb.handle(WaiterAuthed("ws1", W1), 120.0) == [
        CancelTimer(TimerKey.waiter_grace("w1")),
        Route("c7", "u1", "us1", "w1", "ws1"),
        Send("us1", "connect_success", "ws1", W1.as_payload(uuid="ws1")),
        Send(
            "ws1",
            "new_connection",
            "us1",
            user(1).as_payload(uuid="us1", resumed=True, previous_uuid=None),
        ),
    ]
    # a restored waiter is not ready until it says so
    assert sb.handle(WaiterReady("ws1"), 121.0) == [Send("ws1", "ready")]
    assert sb.status() == Status(1, 1, 0, {"ws1": ["us1"]})


def test_restored_waiter_that_never_returns_sends_its_users_to_the_queue() -> None:
    sb = board(resume_grace=GRACE)
    sb.handle(ConversationRestored("c7", user(1), W1, 2.0), 100.0)
    sb.handle(QueuedRestored(user(2), 5.0), 100.0)
    sb.handle(UserAuthed("us1", user(1)), 101.0)
    sb.handle(UserAuthed("us2", user(2)), 102.0)
    assert sb.handle(TimerFired(TimerKey.waiter_grace("w1")), 160.0) == [
        CloseConversation("c7", CloseReason.WAITER_GONE, 160.0),
        Unroute("c7"),
        Send("us1", "disconnected", None),
        Enqueue("u1", 2.0),
        location("us1", 0),
        location("us2", 1),
    ]


def test_restored_user_that_never_returns_ends_its_conversation() -> None:
    sb = board(resume_grace=GRACE)
    sb.handle(ConversationRestored("c7", user(1), W1, 2.0), 100.0)
    sb.handle(WaiterAuthed("ws1", W1), 101.0)
    assert sb.handle(TimerFired(TimerKey.user_grace("u1")), 160.0) == [
        CloseConversation("c7", CloseReason.USER_GONE, 160.0),
        Unroute("c7"),
        Send("ws1", "disconnected", None),
    ]
    assert sb.conversations() == {}
    assert sb.waiter_load() == {"w1": 0}


# == regressions: bugs these tests found, since fixed in src/kefu/core ==============


def test_older_tab_of_a_user_closes_cleanly_after_the_newer_one() -> None:
    """Formerly BUG 1: the account was dropped while an older socket was still open (KeyError)."""
    sb = board()
    assert sb.handle(UserAuthed("s1", user(1)), 0.0) == [StartTimer(TimerKey.idle("s1"), 600.0)]
    assert sb.handle(UserAuthed("s2", user(1)), 1.0) == [StartTimer(TimerKey.idle("s2"), 601.0)]
    assert sb.handle(SocketClosed("s2"), 2.0) == [CancelTimer(TimerKey.idle("s2"))]
    assert sb.handle(SocketClosed("s1"), 3.0) == [CancelTimer(TimerKey.idle("s1"))]
    assert sb.status() == Status(0, 0, 0, {})


def test_older_tab_can_still_connect_after_the_newer_one_closed() -> None:
    """Formerly BUG 1: `connect` on the remaining socket raised KeyError."""
    sb = board()
    sb.handle(UserAuthed("s1", user(1)), 0.0)
    sb.handle(UserAuthed("s2", user(1)), 1.0)
    sb.handle(SocketClosed("s2"), 2.0)
    assert sb.handle(UserConnect("s1"), 3.0) == [Enqueue("u1", 3.0), location("s1", 0)]


def test_older_tab_inherits_the_queue_place_when_the_newer_one_closes() -> None:
    """Formerly BUG 1 (via the grace): the account was dropped under the older socket."""
    sb = board(resume_grace=GRACE)
    sb.handle(UserAuthed("s1", user(1)), 0.0)
    sb.handle(UserAuthed("s2", user(1)), 1.0)
    assert sb.handle(UserConnect("s2"), 2.0) == [Enqueue("u1", 2.0), location("s2", 0)]
    # the place moves to the open tab at once: no grace needed
    assert sb.handle(SocketClosed("s2"), 3.0) == [
        CancelTimer(TimerKey.idle("s2")),
        location("s1", 0),
    ]
    assert sb.handle(TimerFired(TimerKey.user_grace("u1")), 63.0) == []
    assert sb.queue() == ["u1"]
    sb.handle(TimerFired(TimerKey.idle("s1"), last_activity=0.0), 600.0)  # warned
    assert sb.handle(TimerFired(TimerKey.idle("s1"), last_activity=0.0), 660.0) == [
        Dequeue("u1"),
        Send("s1", "disconnected"),
        Close("s1", Hangup.IDLE),
    ]


def test_older_tab_inherits_the_conversation_when_the_newer_one_closes() -> None:
    sb = board(resume_grace=GRACE)
    waiter_in(sb, W1, "ws1")
    sb.handle(UserAuthed("s1", user(1)), 0.0)
    sb.handle(UserConnect("s1"), 1.0)
    assert sb.handle(UserAuthed("s2", user(1)), 2.0) == [
        StartTimer(TimerKey.idle("s2"), 602.0),
        Route("c1", "u1", "s2", "w1", "ws1"),
        Send("s2", "connect_success", "ws1", W1.as_payload(uuid="ws1")),
        Send(
            "ws1",
            "new_connection",
            "s2",
            user(1).as_payload(uuid="s2", resumed=True, previous_uuid="s1"),
        ),
    ]
    assert sb.handle(SocketClosed("s2"), 3.0) == [
        CancelTimer(TimerKey.idle("s2")),
        Route("c1", "u1", "s1", "w1", "ws1"),
        Send("s1", "connect_success", "ws1", W1.as_payload(uuid="ws1")),
        Send(
            "ws1",
            "new_connection",
            "s1",
            user(1).as_payload(uuid="s1", resumed=True, previous_uuid="s2"),
        ),
    ]
    # the last tab goes: now the grace starts
    assert sb.handle(SocketClosed("s1"), 4.0) == [
        CancelTimer(TimerKey.idle("s1")),
        StartTimer(TimerKey.user_grace("u1"), 64.0),
    ]
    assert sb.conversations() == {"c1": ("u1", "w1")}


def test_same_timestamp_arrivals_stay_first_in_first_out() -> None:
    """Formerly BUG 2: equal `queued_at` were ordered by user id, not arrival (6: FIFO)."""
    sb = board()
    sb.handle(UserAuthed("s-b", Profile("b", "bob")), 0.0)
    sb.handle(UserAuthed("s-a", Profile("a", "ann")), 0.0)
    assert sb.handle(UserConnect("s-b"), 5.0) == [Enqueue("b", 5.0), location("s-b", 0)]
    assert sb.handle(UserConnect("s-a"), 5.0) == [Enqueue("a", 5.0), location("s-a", 1)]
    assert sb.queue() == ["b", "a"]


def test_restart_keeps_requeued_users_at_the_front() -> None:
    """Formerly BUG 3: storage kept only opened_at, so after a restart a waiter's users were
    requeued behind later arrivals (6, 8, 10). OpenConversation now carries the arrival."""
    # Before the restart: u2 arrived at 2, u4 at 4; u2 was served at 5.
    sb = board(capacity=1)
    db_queue: dict[str, float] = {}
    db_convs: dict[str, OpenConversation] = {}

    def run(event: Event, now: float) -> None:
        for cmd in sb.handle(event, now):
            if isinstance(cmd, Enqueue):
                db_queue[cmd.user_id] = cmd.queued_at
            elif isinstance(cmd, Dequeue):
                del db_queue[cmd.user_id]
            elif isinstance(cmd, OpenConversation):
                db_convs[cmd.conversation_id] = cmd
            elif isinstance(cmd, CloseConversation):
                del db_convs[cmd.conversation_id]

    run(WaiterAuthed("ws1", W1), 0.0)
    run(WaiterReady("ws1"), 0.0)
    for n, t in ((1, 1.0), (2, 2.0), (4, 4.0)):
        run(UserAuthed(f"us{n}", user(n)), t)
        run(UserConnect(f"us{n}"), t)
    run(UserDisconnect("us1"), 5.0)
    assert db_queue == {"u4": 4.0}
    assert db_convs == {"c2": OpenConversation("c2", "u2", "w1", 5.0, 2.0)}

    # Without a restart, the waiter leaving puts u2 back ahead of u4 (tested above).
    # After a restart, rebuilt from storage, the same holds.
    sb = board(capacity=1, resume_grace=GRACE)
    for uid, queued_at in db_queue.items():
        sb.handle(QueuedRestored(user(int(uid[1:])), queued_at), 100.0)
    for conv in db_convs.values():
        restored = ConversationRestored(
            conv.conversation_id, user(int(conv.user_id[1:])), W1, conv.opened_at, conv.queued_at
        )
        sb.handle(restored, 100.0)
    assert sb.handle(TimerFired(TimerKey.waiter_grace("w1")), 160.0) == [
        CloseConversation("c2", CloseReason.WAITER_GONE, 160.0),
        Unroute("c2"),
        Enqueue("u2", 2.0),
    ]
    assert sb.queue() == ["u2", "u4"]


def test_restored_conversation_without_an_arrival_falls_back_to_opened_at() -> None:
    sb = board(resume_grace=GRACE)
    sb.handle(QueuedRestored(user(4), 4.0), 100.0)
    sb.handle(ConversationRestored("c2", user(2), W1, 5.0), 100.0)
    assert sb.handle(TimerFired(TimerKey.waiter_grace("w1")), 160.0) == [
        CloseConversation("c2", CloseReason.WAITER_GONE, 160.0),
        Unroute("c2"),
        Enqueue("u2", 5.0),
    ]
    assert sb.queue() == ["u4", "u2"]


def test_restore_never_names_a_socket_it_does_not_know() -> None:
    """Formerly BUG 4: '' (no known socket) leaked as `from`, uuid and previous_uuid."""
    sb = board(resume_grace=GRACE)
    out = sb.handle(ConversationRestored("c7", user(1), W1, 2.0), 100.0)
    # the waiter first: its user is not back, so there is nobody to announce yet
    step = sb.handle(WaiterAuthed("ws1", W1), 110.0)
    assert step == [
        CancelTimer(TimerKey.waiter_grace("w1")),
        Route("c7", "u1", None, "w1", "ws1"),
    ]
    out += step
    assert sb.status() == Status(1, 0, 0, {"ws1": []})
    # the user returns: now the waiter hears of it, with no previous socket to name
    step = sb.handle(UserAuthed("us1", user(1)), 120.0)
    assert step == [
        StartTimer(TimerKey.idle("us1"), 720.0),
        CancelTimer(TimerKey.user_grace("u1")),
        Route("c7", "u1", "us1", "w1", "ws1"),
        Send("us1", "connect_success", "ws1", W1.as_payload(uuid="ws1")),
        Send(
            "ws1",
            "new_connection",
            "us1",
            user(1).as_payload(uuid="us1", resumed=True, previous_uuid=None),
        ),
    ]
    out += step
    assert sb.status() == Status(1, 1, 0, {"ws1": ["us1"]})
    for cmd in out:
        if isinstance(cmd, Send):
            assert cmd.frm != "", cmd
            payload = cmd.payload or {}
            assert payload.get("uuid") != "", cmd
            assert payload.get("previous_uuid") != "", cmd
