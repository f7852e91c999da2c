"""`AccountChanged`: an account changed by the admin API, as the switchboard handles it.

Every node forgets the account (`Forget`); with `hang_up` (disabled, erased,
logged out) each of its sockets is closed (`Hangup.REVOKED`) and it is gone
at once, without the resume grace that a dropped socket gets.
"""

from __future__ import annotations

from kefu.core.commands import (
    CancelTimer,
    Close,
    CloseConversation,
    Command,
    Dequeue,
    Enqueue,
    Forget,
    OpenConversation,
    Route,
    Send,
    StartTimer,
    Unroute,
)
from kefu.core.events import (
    AccountChanged,
    ConversationRestored,
    SocketClosed,
    TimerFired,
    UserAuthed,
    WaiterAuthed,
    WaiterReady,
)
from kefu.core.model import CloseReason, Hangup, Profile, TimerKey
from kefu.core.switchboard import Switchboard

from .boards import board, connect, user

W1 = Profile("w1", "wendy")
W2 = Profile("w2", "walter")


def ready(sb: Switchboard, profile: Profile, socket: str, now: float = 0.0) -> None:
    sb.handle(WaiterAuthed(socket, profile), now)
    sb.handle(WaiterReady(socket), now)


def served(
    conv: str, n: int, waiter: Profile, ws: str, now: float, arrived: float
) -> list[Command]:
    u, s = user(n), f"us{n}"
    return [
        Dequeue(u.id),
        OpenConversation(conv, u.id, waiter.id, now, arrived),
        Route(conv, u.id, s, waiter.id, ws),
        Send(s, "connect_success", ws, waiter.as_payload(uuid=ws)),
        Send(ws, "new_connection", s, u.as_payload(uuid=s)),
    ]


def test_a_change_without_hang_up_only_forgets() -> None:
    sb = board(capacity=5)
    ready(sb, W1, "ws1")
    connect(sb, 1, 1.0)
    before = (sb.queue(), sb.conversations(), sb.status())
    assert sb.handle(AccountChanged("u1"), 2.0) == [Forget("u1")]
    assert sb.handle(AccountChanged("nobody", hang_up=True), 2.0) == [Forget("nobody", True)]
    assert (sb.queue(), sb.conversations(), sb.status()) == before


def test_a_disabled_user_loses_every_socket_and_its_conversation() -> None:
    sb = board(capacity=1, resume_grace=60.0)
    ready(sb, W1, "ws1")
    connect(sb, 1, 1.0)
    sb.handle(UserAuthed("us1b", user(1)), 2.0)  # a second tab
    connect(sb, 2, 3.0)  # queued behind
    assert sb.handle(AccountChanged("u1", hang_up=True), 10.0) == [
        Forget("u1", True),
        CancelTimer(TimerKey.idle("us1")),
        Close("us1", Hangup.REVOKED),
        CancelTimer(TimerKey.idle("us1b")),
        Close("us1b", Hangup.REVOKED),
        CloseConversation("c1", CloseReason.USER_GONE, 10.0),
        Unroute("c1"),
        Send("ws1", "disconnected", "us1b"),
        *served("c2", 2, W1, "ws1", 10.0, arrived=3.0),
    ]
    assert sb.conversations() == {"c2": ("u2", "w1")}
    assert sb.account_of("us1") is None and sb.account_of("us1b") is None
    # the sockets' closes come back as SocketClosed: nothing more happens
    assert sb.handle(SocketClosed("us1"), 11.0) == []
    assert sb.handle(SocketClosed("us1b"), 11.0) == []
    assert sb.status().online_user_num == 1


def test_a_disabled_queued_user_leaves_the_queue_and_the_others_move_up() -> None:
    sb = board(capacity=5)
    for n in (1, 2, 3):
        connect(sb, n, float(n))
    assert sb.queue() == ["u1", "u2", "u3"]
    assert sb.handle(AccountChanged("u1", hang_up=True), 5.0) == [
        Forget("u1", True),
        CancelTimer(TimerKey.idle("us1")),
        Close("us1", Hangup.REVOKED),
        Dequeue("u1"),
        Send("us2", "connect_queue", None, {"location": 0}),
        Send("us3", "connect_queue", None, {"location": 1}),
    ]
    assert sb.queue() == ["u2", "u3"]


def test_a_disabled_waiters_users_go_back_to_the_front_without_a_grace() -> None:
    sb = board(capacity=2, resume_grace=60.0)
    ready(sb, W1, "ws1")
    connect(sb, 1, 1.0)
    connect(sb, 2, 2.0)
    out = sb.handle(AccountChanged("w1", hang_up=True), 5.0)
    assert out[:2] == [Forget("w1", True), Close("ws1", Hangup.REVOKED)]
    assert not any(isinstance(cmd, StartTimer) for cmd in out)  # no resume grace
    assert Send("us1", "disconnected", "ws1") in out
    assert Enqueue("u1", 1.0) in out and Enqueue("u2", 2.0) in out
    assert sb.queue() == ["u1", "u2"] and sb.conversations() == {}
    # another waiter takes them, in their original order
    sb.handle(WaiterAuthed("ws2", W2), 6.0)
    out = sb.handle(WaiterReady("ws2"), 6.0)
    assert [c.user_id for c in out if isinstance(c, OpenConversation)] == ["u1", "u2"]


def test_the_grace_of_a_dropped_user_or_waiter_does_not_keep_them() -> None:
    sb = board(capacity=1, resume_grace=60.0)
    ready(sb, W1, "ws1")
    connect(sb, 1, 1.0)
    connect(sb, 2, 2.0)
    sb.handle(SocketClosed("us2"), 3.0)  # u2 keeps its place for 60 s
    assert sb.handle(AccountChanged("u2", hang_up=True), 4.0) == [
        Forget("u2", True),
        CancelTimer(TimerKey.user_grace("u2")),
        Dequeue("u2"),
    ]
    sb.handle(SocketClosed("ws1"), 5.0)  # w1 keeps u1 for 60 s
    out = sb.handle(AccountChanged("w1", hang_up=True), 6.0)
    assert out[:2] == [Forget("w1", True), CancelTimer(TimerKey.waiter_grace("w1"))]
    assert sb.queue() == ["u1"]  # at once, not after the grace
    assert sb.handle(TimerFired(TimerKey.waiter_grace("w1")), 70.0) == []


def test_a_restored_waiter_who_never_came_back_is_let_go() -> None:
    sb = board(capacity=5, resume_grace=60.0)
    sb.handle(ConversationRestored("c9", user(1), W1, 1.0, 1.0), 100.0)
    out = sb.handle(AccountChanged("w1", hang_up=True), 101.0)
    assert out[:2] == [Forget("w1", True), CancelTimer(TimerKey.waiter_grace("w1"))]
    assert CloseConversation("c9", CloseReason.WAITER_GONE, 101.0) in out
    assert sb.queue() == ["u1"]
