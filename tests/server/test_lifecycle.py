"""Sockets coming and going: idle users, auth timeout, kickout, drops and resume."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from support.client import Client, assert_profile, check_date, pair, person
from support.servers import MakeServer

pytestmark = pytest.mark.timeout(30)

TICK = 0.02  # the server's timers may fire this much early, by clock granularity


async def _served(user: Client, waiter: Client, *, skip: tuple[str, ...] = ()) -> None:
    ok = await user.expect("connect_success", from_=waiter.uuid, skip=skip)
    assert ok["payload"]["uuid"] == waiter.uuid
    new = await waiter.expect("new_connection", from_=user.uuid)
    assert new["payload"]["uuid"] == user.uuid


# --------------------------------------------------------------------------- idle


async def test_idle_user_is_warned_then_disconnected(make_server: MakeServer) -> None:
    srv = make_server(idle_timeout=0.5, idle_grace=0.5)
    waiter = await srv.waiter()
    user = await srv.user()
    t0 = time.monotonic()  # the server reads the user's last frame (connect) after this
    await pair(user, waiter)
    idle = await user.expect("idle", timeout=5)
    t_idle = time.monotonic() - t0
    assert isinstance(idle["payload"]["message"], str) and idle["payload"]["message"]
    gone = await user.expect("disconnected", timeout=5)
    await user.expect_closed(1000)
    await waiter.expect("disconnected", from_=user.uuid)
    # not before the timeout (however slow the machine, t0 came first), and the grace was
    # given: the server's own dates of the two frames
    assert t_idle >= 0.5 - TICK, t_idle
    given = (check_date(gone["date"]) - check_date(idle["date"])).total_seconds()
    assert given >= 0.5 - TICK, given


async def test_active_user_is_not_idled(make_server: MakeServer) -> None:
    """A frame every 0.1 s for longer than timeout + grace, messages then typing alone.

    The timeout is 15 times the gap between frames, so a loaded machine does not
    idle the user by accident.
    """
    srv = make_server(idle_timeout=1.5, idle_grace=0.5)
    waiter = await srv.waiter()
    user = await srv.user()
    await pair(user, waiter)
    deadline = time.monotonic() + 2.2  # past timeout + grace
    while time.monotonic() < deadline:
        ack = await user.send_text("tick")  # expect() fails on an `idle` frame
        await waiter.expect("message_text", id=ack["id"])
        await asyncio.sleep(0.1)
    deadline = time.monotonic() + 2.2  # any frame counts: typing alone, no message either way
    while time.monotonic() < deadline:
        await user.send({"type": "typing", "payload": {"typing": True}})
        await waiter.expect("typing")
        await asyncio.sleep(0.1)
    await user.expect_nothing()  # no `idle` waiting unread
    ack = await user.send_text("still here")
    await waiter.expect("message_text", id=ack["id"])


async def test_idle_warning_then_activity_keeps_the_user(make_server: MakeServer) -> None:
    """Each warning is answered within the grace: the next frame is a fresh warning a
    timeout later, never `disconnected`, until well past the first warning's grace (by
    the server's dates)."""
    grace = 1.5
    srv = make_server(idle_timeout=0.5, idle_grace=grace)
    waiter = await srv.waiter()
    user = await srv.user()
    await pair(user, waiter)
    first = check_date((await user.expect("idle", timeout=5))["date"])
    while True:
        await user.send({"type": "typing", "payload": {"typing": True}})  # resets the clock
        await waiter.expect("typing")
        again = check_date((await user.expect("idle", timeout=5))["date"])  # not disconnected
        if (again - first).total_seconds() > grace:
            break
    ack = await user.send_text("and still here")
    await waiter.expect("message_text", id=ack["id"])


async def test_idle_queued_user_leaves_the_queue(make_server: MakeServer) -> None:
    srv = make_server(idle_timeout=0.5, idle_grace=0.3)  # no waiter at all
    sleeper = await srv.user(label="sleeper")
    await sleeper.send({"type": "connect"})
    await sleeper.expect("connect_queue", payload={"location": 0})
    await sleeper.expect("idle", timeout=5)
    await sleeper.expect("disconnected", timeout=5)
    await sleeper.expect_closed(1000)
    assert (await srv.status())["data"]["pending_num"] == 0


# --------------------------------------------------------------------------- auth timeout


async def test_no_auth_within_auth_timeout_closes_4401(make_server: MakeServer) -> None:
    srv = make_server(auth_timeout=2.0)  # `ok` has 2 s to authenticate
    ok = await srv.user()  # opened first: its timer, were it not cancelled, fires first
    lazy = await srv.open("user")
    lazy_waiter = await srv.open("waiter")
    await lazy.expect_closed(4401, timeout=8)  # 8 s: the setting, not the default (10 s)
    await lazy_waiter.expect_closed(4401, timeout=8)
    await ok.send({"type": "connect"})  # an authenticated socket is not affected
    await ok.expect("connect_queue")


async def test_failed_auth_does_not_extend_the_auth_timeout(make_server: MakeServer) -> None:
    srv = make_server(auth_timeout=0.6)
    sock = await srv.open("user")
    await sock.send({"type": "auth", "payload": {"token": "garbage"}})
    await sock.expect_error(999999)
    await sock.expect_closed(4401, timeout=5)


# --------------------------------------------------------------------------- kickout


async def test_second_waiter_login_kicks_out_the_first(make_server: MakeServer) -> None:
    srv = make_server(max_users_per_waiter=5)
    who = person("waiter")
    old = await srv.waiter(who, label="waiter-old")
    u0 = await srv.user(label="u0")
    u1 = await srv.user(label="u1")
    await pair(u0, old)
    await pair(u1, old)

    new = await srv.open("waiter", "waiter-new")
    await new.auth(who)
    await old.expect("kickout")
    await old.expect_closed(4409)

    resumed = {}
    for _ in range(2):
        frame = await new.expect("new_connection")
        assert frame["payload"].get("resumed") is True, frame
        resumed[frame["from"]] = frame
    assert set(resumed) == {u0.uuid, u1.uuid}
    for user in (u0, u1):
        assert user.person is not None
        assert_profile(resumed[user.uuid]["payload"], user.person)
        assert resumed[user.uuid]["payload"]["uuid"] == user.uuid

    await new.drain(("ready",))  # it may be told it is still ready
    # the users were not requeued or disconnected (they may hear their waiter's new socket)
    for user in (u0, u1):
        for frame in await user.drain(("connect_success",)):
            assert frame["from"] == new.uuid, frame
    # chat goes on through the new socket
    a = await u0.send_text("hello again")
    await new.expect("message_text", from_=u0.uuid, id=a["id"])
    b = await new.send_text("I am on my new desk", to=u1.uuid)
    await u1.expect("message_text", id=b["id"], from_=new.uuid)


# --------------------------------------------------------------------------- waiter drops


async def test_dropped_waiter_users_go_to_the_front_of_the_queue(make_server: MakeServer) -> None:
    srv = make_server(max_users_per_waiter=2, resume_grace=0)
    w1 = await srv.waiter(label="w1")
    u0, u1, u2 = [await srv.user(label=f"u{i}") for i in range(3)]
    await pair(u0, w1)
    await pair(u1, w1)
    await u2.send({"type": "connect"})
    await u2.expect("connect_queue", payload={"location": 0})

    w1.abort()
    # each of w1's users first hears `disconnected` from w1 (as in the original system),
    # then u0 and u1 go back in front, in their original order; u2 moves behind them
    await u0.expect("disconnected", from_=w1.uuid)
    await u0.expect("connect_queue", payload={"location": 0})
    await u1.expect("disconnected", from_=w1.uuid)
    await u1.expect("connect_queue", payload={"location": 1})
    await u2.expect("connect_queue", payload={"location": 2})
    assert (await srv.status())["data"]["pending_num"] == 3

    w2 = await srv.waiter(label="w2")
    await _served(u0, w2)
    await _served(u1, w2)
    await u2.expect("connect_queue", payload={"location": 0})


async def test_dropped_waiter_users_are_served_by_another_ready_waiter(
    make_server: MakeServer,
) -> None:
    srv = make_server(max_users_per_waiter=2, resume_grace=0)
    w1 = await srv.waiter(label="w1")
    u0, u1 = [await srv.user(label=f"u{i}") for i in range(2)]
    await pair(u0, w1)
    await pair(u1, w1)
    w2 = await srv.waiter(label="w2")  # ready, empty

    w1.abort()
    # each may first hear connect_queue; both end up with w2, u0 first
    new0 = await w2.expect("new_connection")
    new1 = await w2.expect("new_connection")
    assert [new0["from"], new1["from"]] == [u0.uuid, u1.uuid]
    for user in (u0, u1):
        await user.expect("disconnected", from_=w1.uuid)
        await user.expect("connect_success", from_=w2.uuid, skip=("connect_queue",))
    ack = await u1.send_text("hi w2")
    await w2.expect("message_text", from_=u1.uuid, id=ack["id"])


async def test_cleanly_closed_waiter_socket_also_requeues(make_server: MakeServer) -> None:
    srv = make_server(max_users_per_waiter=2, resume_grace=0)
    w1 = await srv.waiter(label="w1")
    u0 = await srv.user(label="u0")
    await pair(u0, w1)
    await w1.close()
    await u0.expect("disconnected", from_=w1.uuid)
    await u0.expect("connect_queue", payload={"location": 0})


async def test_waiter_resumes_within_grace(make_server: MakeServer) -> None:
    srv = make_server(max_users_per_waiter=5, resume_grace=30)
    who = person("waiter")
    w = await srv.waiter(who, label="w-old")
    u0 = await srv.user(label="u0")
    await pair(u0, w)
    w.abort()
    # the server saw the drop: this is a resume, not a kickout
    await srv.until("the waiter's drop seen", lambda d: d["online_waiter_num"] == 0)
    w2 = await srv.open("waiter", "w-new")
    await w2.auth(who)
    frame = await w2.expect("new_connection", from_=u0.uuid)
    assert frame["payload"].get("resumed") is True, frame
    await w2.drain(("ready",))  # it may be told it is still ready
    for notice in await u0.drain(("connect_success",)):  # not connect_queue: not requeued
        assert notice["from"] == w2.uuid, notice
    ack = await u0.send_text("are you back?")
    await w2.expect("message_text", from_=u0.uuid, id=ack["id"])
    assert (await srv.status())["data"]["pending_num"] == 0  # u0 was never requeued
    # it stays ready: a new user is assigned to it
    u1 = await srv.user(label="u1")
    await u1.send({"type": "connect"})
    await _served(u1, w2)


async def test_waiter_grace_runs_out_then_users_are_requeued(make_server: MakeServer) -> None:
    srv = make_server(max_users_per_waiter=5, resume_grace=0.5)
    w = await srv.waiter()
    u0 = await srv.user(label="u0")
    await pair(u0, w)
    dropped = time.time()  # the server sees the drop after this
    w.abort()
    # within the grace nothing changes for the user: its next frame comes after it
    gone = await u0.expect("disconnected", from_=w.uuid, timeout=5)
    assert check_date(gone["date"]).timestamp() >= dropped + 0.5 - TICK, gone
    await u0.expect("connect_queue", payload={"location": 0})


# --------------------------------------------------------------------------- user drops


async def test_user_resumes_conversation_within_grace(make_server: MakeServer) -> None:
    srv = make_server(resume_grace=30)
    waiter = await srv.waiter()
    who = person("user")
    old = await srv.user(who, label="user-old")
    await pair(old, waiter)
    old_uuid = old.uuid
    old.abort()
    # the server saw the drop (users may have several sockets)
    await srv.until("the user's drop seen", lambda d: d["online_user_num"] == 0)

    new = await srv.open("user", "user-new")
    await new.auth(who)
    ok = await new.expect("connect_success", from_=waiter.uuid)  # unasked
    assert ok["payload"]["uuid"] == waiter.uuid
    assert new.uuid != old_uuid
    frame = await waiter.expect("new_connection", from_=new.uuid)  # no `disconnected` first
    assert frame["payload"]["resumed"] is True
    assert frame["payload"]["previous_uuid"] == old_uuid
    assert frame["payload"]["uuid"] == new.uuid

    ack = await waiter.send_text("welcome back", to=new.uuid)
    await new.expect("message_text", from_=waiter.uuid, id=ack["id"])
    ack = await new.send_text("thanks")
    await waiter.expect("message_text", from_=new.uuid, id=ack["id"])


async def test_user_resume_replays_messages_after_last_id(make_server: MakeServer) -> None:
    srv = make_server(resume_grace=30)
    waiter = await srv.waiter()
    who = person("user")
    old = await srv.user(who, label="user-old")
    await pair(old, waiter)
    mine = await old.send_text("my question")
    await waiter.expect("message_text", id=mine["id"])
    answers = []
    for text in ("answer 1", "answer 2", "answer 3"):
        ack = await waiter.send_text(text, to=old.uuid)
        answers.append(ack)
    for ack in answers:
        await old.expect("message_text", id=ack["id"])
    old.abort()
    # the server saw the drop (users may have several sockets)
    await srv.until("the user's drop seen", lambda d: d["online_user_num"] == 0)

    new = await srv.open("user", "user-new")
    await new.auth(who, last_id=mine["id"])
    replayed: list[dict[str, Any]] = []
    connected = False
    while len(replayed) < 3 or not connected:
        frame = await new.recv()
        if frame["type"] == "connect_success":
            assert frame["from"] == waiter.uuid
            connected = True
        else:
            assert frame["type"] == "message_text", frame
            assert frame["from"] == waiter.uuid
            replayed.append(frame)
    assert [f["id"] for f in replayed] == [a["id"] for a in answers]
    assert [f["payload"]["text"] for f in replayed] == ["answer 1", "answer 2", "answer 3"]
    await new.expect_nothing(0.2)  # nothing else, in particular not "my question"


async def test_user_resume_keeps_the_queue_place(make_server: MakeServer) -> None:
    srv = make_server(resume_grace=30, max_users_per_waiter=1)
    waiter = await srv.waiter()
    u0 = await srv.user(label="u0")
    await pair(u0, waiter)
    who = person("user")
    u1 = await srv.user(who, label="u1-old")
    u2 = await srv.user(label="u2")
    await u1.send({"type": "connect"})
    await u1.expect("connect_queue", payload={"location": 0})
    await u2.send({"type": "connect"})
    await u2.expect("connect_queue", payload={"location": 1})

    u1.abort()
    await u2.expect_nothing(0.2)  # u1 keeps its place during the grace
    u1b = await srv.open("user", "u1-new")
    await u1b.auth(who)
    await u1b.expect("connect_queue", payload={"location": 0})

    await u0.send({"type": "disconnect"})
    await u0.expect("disconnected")
    await waiter.expect("disconnected", from_=u0.uuid)
    await _served(u1b, waiter)
    await u2.expect("connect_queue", payload={"location": 0})


async def test_user_grace_runs_out_then_the_conversation_ends(make_server: MakeServer) -> None:
    srv = make_server(resume_grace=0.5)
    waiter = await srv.waiter()
    user = await srv.user()
    await pair(user, waiter)
    uid = user.uuid
    dropped = time.time()  # the server sees the drop after this
    user.abort()
    # nothing within the grace: the waiter's next frame comes after it
    gone = await waiter.expect("disconnected", from_=uid, timeout=5)
    assert check_date(gone["date"]).timestamp() >= dropped + 0.5 - TICK, gone
    # the same account coming back later starts over: no conversation
    assert user.person is not None
    again = await srv.user(user.person)
    await again.expect_nothing(0.2)
    await again.send({"type": "message_text", "payload": {"text": "hi"}})
    await again.expect("not_connect")
