"""The queue and assignment (protocol section 6), each test on a fresh server."""

from __future__ import annotations

import pytest

from support.client import Client, assert_profile, pair
from support.servers import MakeServer, Server

pytestmark = pytest.mark.timeout(40)


async def _users(srv: Server, n: int) -> list[Client]:
    return [await srv.user(label=f"u{i}") for i in range(n)]


async def _queue(user: Client, location: int) -> None:
    await user.send({"type": "connect"})
    await user.expect("connect_queue", payload={"location": location})


async def _served(user: Client, waiter: Client, *, skip: tuple[str, ...] = ()) -> None:
    """`user` (already asked) is now served by `waiter`: both sides are told."""
    assert user.person is not None and waiter.person is not None
    ok = await user.expect("connect_success", from_=waiter.uuid, skip=skip)
    assert_profile(ok["payload"], waiter.person)
    assert ok["payload"]["uuid"] == waiter.uuid
    new = await waiter.expect("new_connection", from_=user.uuid)
    assert_profile(new["payload"], user.person)
    assert new["payload"]["uuid"] == user.uuid


async def _end(user: Client, waiter: Client) -> None:
    await user.send({"type": "disconnect"})
    await user.expect("disconnected", from_=waiter.uuid)
    await waiter.expect("disconnected", from_=user.uuid)


async def test_seven_users_one_waiter(make_server: MakeServer) -> None:
    srv = make_server(max_users_per_waiter=1)
    waiter = await srv.waiter()
    users = await _users(srv, 7)
    await pair(users[0], waiter)
    for i, user in enumerate(users[1:]):
        await _queue(user, i)

    status = await srv.status()
    assert status["data"]["pending_num"] == 6

    for served in range(7):
        await _end(users[served], waiter)
        rest = users[served + 1 :]
        if not rest:
            break
        await _served(rest[0], waiter)
        for place, user in enumerate(rest[1:]):
            await user.expect("connect_queue", payload={"location": place})
        # the newly served user really is in a conversation
        ack = await rest[0].send_text(f"I am u{served + 1}")
        await waiter.expect("message_text", from_=rest[0].uuid, id=ack["id"])
    for user in [*users, waiter]:
        await user.expect_nothing(0.1)
    assert (await srv.status())["data"]["pending_num"] == 0


async def test_queue_waits_for_a_waiter_to_become_ready(make_server: MakeServer) -> None:
    srv = make_server(max_users_per_waiter=2)
    users = await _users(srv, 3)
    for i, user in enumerate(users):
        await _queue(user, i)
    waiter = await srv.waiter(ready=False)
    await waiter.expect_nothing(0.2)  # not ready: nobody is assigned
    await users[0].expect_nothing(0.05)

    await waiter.send({"type": "ready"})
    await waiter.expect("ready")
    for user in users[:2]:  # FIFO, up to capacity
        new = await waiter.expect("new_connection", from_=user.uuid)
        assert new["payload"]["uuid"] == user.uuid
    for user in users[:2]:
        await user.expect("connect_success", from_=waiter.uuid)
    await users[2].expect("connect_queue", payload={"location": 0})


async def test_queued_user_leaving_moves_those_behind(make_server: MakeServer) -> None:
    srv = make_server(max_users_per_waiter=1)
    waiter = await srv.waiter()
    u0, u1, u2, u3 = await _users(srv, 4)
    await pair(u0, waiter)
    for i, user in enumerate((u1, u2, u3)):
        await _queue(user, i)

    await u2.send({"type": "disconnect"})
    await u2.expect("disconnected")
    await u3.expect("connect_queue", payload={"location": 1})
    await waiter.expect_nothing()  # a queued user is none of the waiter's business
    assert (await srv.status())["data"]["pending_num"] == 2

    await _end(u0, waiter)
    await _served(u1, waiter, skip=("connect_queue",))  # u1's place never changed
    await u3.expect("connect_queue", payload={"location": 0})
    await u2.expect_nothing(0.05)  # it left: not served


async def test_connect_while_queued_repeats_the_place(make_server: MakeServer) -> None:
    srv = make_server(max_users_per_waiter=1)
    waiter = await srv.waiter()
    u0, u1, u2 = await _users(srv, 3)
    await pair(u0, waiter)
    await _queue(u1, 0)
    await _queue(u2, 1)
    await _queue(u2, 1)  # asking again: same place, no second entry
    await _queue(u1, 0)
    assert (await srv.status())["data"]["pending_num"] == 2

    await _end(u0, waiter)
    await _served(u1, waiter)
    await u2.expect("connect_queue", payload={"location": 0})
    await _end(u1, waiter)
    await _served(u2, waiter)
    await waiter.expect_nothing()  # u2 was queued once, so it is served once
    assert (await srv.status())["data"]["pending_num"] == 0


async def test_two_waiters_share_ten_users_evenly(make_server: MakeServer) -> None:
    srv = make_server(max_users_per_waiter=5)
    w1 = await srv.waiter(label="w1")
    w2 = await srv.waiter(label="w2")
    users = await _users(srv, 11)
    for i, user in enumerate(users[:10]):
        # least busy first; on a tie the one idle longest (w1 was ready first)
        expected = w1 if i % 2 == 0 else w2
        await user.send({"type": "connect"})
        await _served(user, expected)
    await _queue(users[10], 0)  # both full now

    status = (await srv.status())["data"]
    matchers = status["matchers"]
    assert sorted(matchers[w1.uuid]) == sorted(u.uuid for u in users[0:10:2])
    assert sorted(matchers[w2.uuid]) == sorted(u.uuid for u in users[1:10:2])
    assert status["pending_num"] == 1


async def test_least_busy_then_longest_waiting(make_server: MakeServer) -> None:
    srv = make_server(max_users_per_waiter=5)
    w1 = await srv.waiter(label="w1")
    u = await _users(srv, 6)
    for user in u[:2]:
        await user.send({"type": "connect"})
        await _served(user, w1)
    w2 = await srv.waiter(label="w2")
    # w2 has 0 users, w1 has 2: w2 gets the next two
    for user in u[2:4]:
        await user.send({"type": "connect"})
        await _served(user, w2)
    # 2 - 2: w1's last assignment (u1) is older than w2's (u3)
    await u[4].send({"type": "connect"})
    await _served(u[4], w1)
    await u[5].send({"type": "connect"})
    await _served(u[5], w2)


async def test_freed_place_goes_to_the_least_busy_waiter(make_server: MakeServer) -> None:
    srv = make_server(max_users_per_waiter=2)
    w1 = await srv.waiter(label="w1")
    w2 = await srv.waiter(label="w2")
    u = await _users(srv, 5)
    for i, user in enumerate(u[:4]):
        await user.send({"type": "connect"})
        await _served(user, w1 if i % 2 == 0 else w2)
    await _queue(u[4], 0)
    await _end(u[1], w2)  # w2 frees a place
    await _served(u[4], w2)


async def test_unready_stops_new_assignments_but_not_conversations(make_server: MakeServer) -> None:
    srv = make_server(max_users_per_waiter=5)
    waiter = await srv.waiter()
    u0, u1 = await _users(srv, 2)
    await pair(u0, waiter)

    await waiter.send({"type": "unready"})
    await waiter.expect("unready")
    await _queue(u1, 0)
    await waiter.expect_nothing()

    # the running conversation goes on, both ways
    a = await u0.send_text("still there?")
    await waiter.expect("message_text", from_=u0.uuid, id=a["id"])
    b = await waiter.send_text("yes", to=u0.uuid)
    await u0.expect("message_text", from_=waiter.uuid, id=b["id"])

    # ending it does not pull from the queue while unready
    await _end(u0, waiter)
    await u1.expect_nothing()

    await waiter.send({"type": "ready"})
    await waiter.expect("ready")
    await _served(u1, waiter)


async def test_waiter_disconnecting_a_user_serves_the_next(make_server: MakeServer) -> None:
    srv = make_server(max_users_per_waiter=1)
    waiter = await srv.waiter()
    u0, u1, u2 = await _users(srv, 3)
    await pair(u0, waiter)
    await _queue(u1, 0)
    await _queue(u2, 1)
    await waiter.send({"type": "disconnect", "payload": {"uuid": u0.uuid}})
    await u0.expect("disconnected", from_=waiter.uuid)
    await waiter.expect("disconnected", from_=u0.uuid)
    await _served(u1, waiter)
    await u2.expect("connect_queue", payload={"location": 0})


async def test_closed_queued_socket_leaves_the_queue(make_server: MakeServer) -> None:
    """resume_grace=0: a queued user whose socket closes is gone, those behind move up."""
    srv = make_server(max_users_per_waiter=1)
    waiter = await srv.waiter()
    u0, u1, u2 = await _users(srv, 3)
    await pair(u0, waiter)
    await _queue(u1, 0)
    await _queue(u2, 1)
    u1.abort()
    await u2.expect("connect_queue", payload={"location": 0})
    await _end(u0, waiter)
    await _served(u2, waiter)
