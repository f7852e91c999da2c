"""The desk, in one process: what it makes of the switchboard's commands.

A recording placement and a store that keeps what it is given stand in for
the node and the database: the desk's job is only to turn commands into
orders, records and timers, in order, and the server and cluster suites
test it end to end.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from kefu.core import commands as c
from kefu.core import events as e
from kefu.core.model import Profile, TimerKey
from kefu.server.desk import Desk
from kefu.server.orders import CloseSocket, Deliver, IdleAt, Pair, Unpair
from kefu.settings import Settings
from kefu.store.base import OpenState

USER = Profile("u1", "user1")
WAITER = Profile("w1", "waiter1")


class Recorder:
    """A placement that holds every socket and records every order."""

    def __init__(self, held: set[str] | None = None) -> None:
        self.orders: list[Any] = []
        self.commits = 0
        self.held = held

    def reaches(self, socket: str) -> bool:
        return self.held is None or socket in self.held

    def deliver(self, order: Deliver) -> None:
        self.orders.append(order)

    def close(self, order: CloseSocket) -> None:
        self.orders.append(order)

    def idle(self, order: IdleAt) -> None:
        self.orders.append(order)

    def pair(self, order: Pair) -> None:
        self.orders.append(order)

    def unpair(self, order: Unpair) -> None:
        self.orders.append(order)

    def after_commit(self) -> None:
        self.commits += 1
        self.orders.append("after_commit")

    def frames(self) -> list[tuple[str, dict[str, Any]]]:
        return [(o.socket, json.loads(o.frame)) for o in self.orders if isinstance(o, Deliver)]


class Records:
    """A store that keeps the lifecycle records it is given (and their epoch)."""

    def __init__(self, state: OpenState | None = None) -> None:
        self.written: list[tuple[Any, int | None]] = []
        self.state = state or OpenState([], [])

    def write(self, record: Any, epoch: int | None = None) -> None:
        self.written.append((record, epoch))

    async def load_open_state(self) -> OpenState:
        return self.state


def desk(placement: Recorder, store: Records, epoch: int | None = None, **settings: Any) -> Desk:
    ids = iter(f"c{i}" for i in range(1, 100))
    return Desk(
        Settings(**settings),
        store,  # type: ignore[arg-type]
        placement,
        lambda: next(ids),
        epoch=epoch,
        clock=lambda: 100.0,
    )


def test_op_id_echoes_on_the_first_frame_to_the_sender_only() -> None:
    p, s = Recorder(), Records()
    d = desk(p, s)
    d.handle(e.WaiterAuthed("ws", WAITER))
    d.handle(e.WaiterReady("ws"), "op-ready")
    d.handle(e.UserAuthed("us", USER))
    p.orders.clear()
    d.handle(e.UserConnect("us"), "op-1")
    frames = p.frames()
    assert [(sock, f["type"], f.get("op_id")) for sock, f in frames] == [
        ("us", "connect_success", "op-1"),
        ("ws", "new_connection", None),
    ]
    assert frames[0][1]["from"] == "ws" and frames[1][1]["from"] == "us"
    # the conversation's record, then the orders behind it wait for its commit
    opened = [r for r, _ in s.written if isinstance(r, c.OpenConversation)]
    assert opened == [c.OpenConversation("c1", "u1", "w1", 100.0, 100.0)]
    assert p.orders.index("after_commit") < p.orders.index(
        next(o for o in p.orders if isinstance(o, Pair))
    )


def test_a_refusal_is_answered_to_the_sender_with_its_op_id() -> None:
    p, s = Recorder(), Records()
    d = desk(p, s)
    d.handle(e.WaiterAuthed("ws", WAITER))
    d.handle(e.WaiterEnd("ws", "nobody"), "op-x")
    ((socket, frame),) = p.frames()
    assert socket == "ws" and frame["type"] == "error" and frame["op_id"] == "op-x"
    assert frame["payload"]["status"] == 100002


async def test_records_carry_the_epoch_and_idle_checks_go_to_the_node() -> None:
    p, s = Recorder(), Records()
    d = desk(p, s, epoch=7, idle_timeout=30)
    d.handle(e.UserAuthed("us", USER))
    d.handle(e.UserConnect("us"))
    assert s.written == [(c.Enqueue("u1", 100.0), 7)]
    assert IdleAt("us", 130.0) in p.orders
    d.handle(e.SocketClosed("us"))
    assert IdleAt("us", None) in p.orders  # the check is cancelled where it runs
    assert list(d._timers) == [TimerKey.user_grace("u1")]  # the grace runs here
    d.close()


def test_kickout_is_a_close_with_its_code() -> None:
    p, s = Recorder(), Records()
    d = desk(p, s)
    d.handle(e.WaiterAuthed("ws1", WAITER))
    d.handle(e.WaiterAuthed("ws2", WAITER))
    assert CloseSocket("ws1", 4409) in p.orders


def test_no_frame_is_made_for_a_socket_nobody_holds() -> None:
    p, s = Recorder(held={"ws"}), Records()
    d = desk(p, s)
    d.handle(e.WaiterAuthed("ws", WAITER))
    d.handle(e.WaiterReady("ws"))
    d.handle(e.UserAuthed("us", USER))
    d.handle(e.UserConnect("us"))
    assert [sock for sock, _ in p.frames()] == ["ws", "ws"]  # ready, new_connection


def test_skip_leaves_out_what_a_client_has() -> None:
    p, s = Recorder(), Records()
    d = desk(p, s)
    d.handle(e.WaiterAuthed("ws", WAITER))
    d.handle(e.WaiterReady("ws"), skip=lambda send: send.type == "ready")
    assert p.frames() == []


async def test_grace_timers_run_in_the_desk_and_restore_rebuilds() -> None:
    from kefu.store.base import Conversation

    conv = Conversation("c9", "u1", "w1", 50.0, queued=40.0)
    p, s = Recorder(), Records(OpenState([], [(conv, USER, WAITER)]))
    d = Desk(Settings(resume_grace=0.05), s, p, lambda: "cx")  # type: ignore[arg-type]
    fired: list[str] = []
    d.on_timer = lambda: fired.append("flush")
    assert await d.restore() == (0, 1)
    assert d.switchboard.conversations() == {"c9": ("u1", "w1")}
    # nobody came back within the grace: the user's conversation ends, by the desk's own timer
    for _ in range(100):
        if fired:
            break
        await asyncio.sleep(0.02)
    assert "flush" in fired
    assert any(isinstance(r, c.CloseConversation) for r, _ in s.written)
    d.close()
    assert d._timers == {}


def test_a_switchboard_bug_skips_the_event(caplog: Any) -> None:
    p, s = Recorder(), Records()
    d = desk(p, s)
    d.handle(e.TimerFired(TimerKey.idle("nobody"), None))  # harmless
    d.switchboard.handle = lambda *a: (_ for _ in ()).throw(ValueError("bug"))  # type: ignore[method-assign]
    d.handle(e.UserAuthed("us", USER))  # logged, skipped, the desk goes on
    assert "switchboard failed on UserAuthed" in caplog.text
