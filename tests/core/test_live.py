"""The switchboard's read side for the admin API: `live()`, and how users leave the queue.

`Switchboard.live` is a pure query (no commands); `Dequeue.served` and
`Dequeue.left_at` tell the store whether a departure from the queue was an
assignment or a user who gave up, and when (the `queue_exits` table).
"""

from __future__ import annotations

from kefu.core.commands import Command, Dequeue
from kefu.core.events import (
    SocketClosed,
    TimerFired,
    UserDisconnect,
    WaiterAuthed,
    WaiterReady,
    WaiterUnready,
)
from kefu.core.model import Profile, TimerKey
from kefu.core.switchboard import Live, QueuedRow, WaiterRow

from .boards import board, connect, user

W1 = Profile("w1", "wendy", "Wendy")
W2 = Profile("w2", "adam")


def dequeues(commands: list[Command]) -> list[tuple[str, bool, float | None]]:
    return [(c.user_id, c.served, c.left_at) for c in commands if isinstance(c, Dequeue)]


def test_live_lists_the_queue_in_order_and_every_waiter_with_its_load() -> None:
    sb = board(capacity=2, resume_grace=30.0)
    assert sb.live() == Live([], 0, [])
    sb.handle(WaiterAuthed("ws1", W1), 0.0)
    sb.handle(WaiterReady("ws1"), 0.0)
    sb.handle(WaiterAuthed("ws2", W2), 0.0)  # signed in, not ready
    for n, at in ((1, 1.0), (2, 2.0), (3, 3.0), (4, 4.0), (5, 5.0)):
        connect(sb, n, at)
    # wendy took u1 and u2 (capacity 2); u3, u4, u5 wait in arrival order
    live = sb.live()
    assert live.queue == [
        QueuedRow(user(3), 3.0, True),
        QueuedRow(user(4), 4.0, True),
        QueuedRow(user(5), 5.0, True),
    ]
    assert live.queued == 3
    assert live.waiters == [  # by username: adam, then wendy
        WaiterRow(W2, ready=False, attached=True, load=0, capacity=2),
        WaiterRow(W1, ready=True, attached=True, load=2, capacity=2),
    ]
    # a limit shows the head of the queue and still counts everyone
    assert sb.live(limit=2) == Live(live.queue[:2], 3, live.waiters)
    assert sb.live(limit=0).queue == []

    # u4's socket drops: it keeps its place within the grace, detached
    sb.handle(SocketClosed("us4"), 6.0)
    assert [(r.user.id, r.attached) for r in sb.live().queue] == [
        ("u3", True),
        ("u4", False),
        ("u5", True),
    ]
    # wendy's socket drops: still listed (her conversations wait for her), detached
    sb.handle(SocketClosed("ws1"), 7.0)
    assert sb.live().waiters[1] == WaiterRow(W1, ready=True, attached=False, load=2, capacity=2)
    # adam gets ready: u3 and u5 are served (u4 is detached and waits)
    sb.handle(WaiterReady("ws2"), 8.0)
    live = sb.live()
    assert live.queue == [QueuedRow(user(4), 4.0, False)]
    assert live.waiters[0] == WaiterRow(W2, ready=True, attached=True, load=2, capacity=2)
    sb.handle(WaiterUnready("ws2"), 9.0)
    assert sb.live().waiters[0].ready is False


def test_live_is_a_query() -> None:
    sb = board(capacity=2)
    connect(sb, 1, 1.0)
    before = (sb.queue(), sb.conversations(), sb.status())
    sb.live()
    assert (sb.queue(), sb.conversations(), sb.status()) == before


def test_a_dequeue_says_whether_the_user_was_served_and_when() -> None:
    sb = board(capacity=1, resume_grace=30.0)
    for n, at in ((1, 1.0), (2, 2.0), (3, 3.0), (4, 4.0)):
        assert dequeues(connect(sb, n, at)) == []
    # a waiter comes: u1 is served at 10.0
    sb.handle(WaiterAuthed("ws1", W1), 10.0)
    assert dequeues(sb.handle(WaiterReady("ws1"), 10.0)) == [("u1", True, 10.0)]
    # u2 disconnects while queued: it left
    assert dequeues(sb.handle(UserDisconnect("us2"), 11.0)) == [("u2", False, 11.0)]
    # u3's socket drops and its grace runs out: it left, when the grace ended
    assert dequeues(sb.handle(SocketClosed("us3"), 12.0)) == []
    fired = sb.handle(TimerFired(TimerKey.user_grace("u3")), 42.0)
    assert dequeues(fired) == [("u3", False, 42.0)]
    # u1's conversation ends: u4 is served from the queue
    assert dequeues(sb.handle(UserDisconnect("us1"), 50.0)) == [("u4", True, 50.0)]
    assert sb.live().queued == 0


def test_a_user_idle_in_the_queue_left_it() -> None:
    sb = board(capacity=2)
    connect(sb, 1, 1.0)
    sb.handle(TimerFired(TimerKey.idle("us1"), last_activity=1.0), 700.0)  # `idle` sent
    out = sb.handle(TimerFired(TimerKey.idle("us1"), last_activity=1.0), 800.0)
    assert dequeues(out) == [("u1", False, 800.0)]
