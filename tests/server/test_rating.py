"""Rating a conversation: the user's `rate`, the waiter's request for one."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from support.client import Client, new_op_id, pair
from support.servers import Server

pytestmark = pytest.mark.timeout(30)


async def _pair(server: Server) -> tuple[Client, Client]:
    waiter = await server.waiter()
    user = await server.user()
    await pair(user, waiter)
    return user, waiter


async def _rate(user: Client, waiter: Client, rate: int) -> None:
    """Rate the open conversation: acks on both sides, then it ends on both sides."""
    await user.send({"type": "rate", "payload": {"rate": rate}})
    ok = await user.expect("rate_success")
    assert ok["payload"] == {"rate": rate}
    got = await waiter.expect("rate_user_success")
    assert got["payload"] == {"rate": rate}
    await user.expect("disconnected", from_=waiter.uuid)
    await waiter.expect("disconnected", from_=user.uuid)


@pytest.mark.parametrize("rate", [1, 3, 5])
async def test_user_rates_and_the_conversation_ends(server: Server, rate: int) -> None:
    user, waiter = await _pair(server)
    await _rate(user, waiter, rate)
    op = new_op_id()
    await user.send({"type": "message_text", "op_id": op, "payload": {"text": "hello?"}})
    await user.expect("not_connect", op_id=op)


async def test_rate_success_echoes_the_op_id(server: Server) -> None:
    user, _ = await _pair(server)
    op = new_op_id()
    await user.send({"type": "rate", "op_id": op, "payload": {"rate": 5}})
    await user.expect("rate_success", op_id=op, payload={"rate": 5})


async def test_rating_twice_is_a_duplicate(server: Server) -> None:
    user, waiter = await _pair(server)
    await _rate(user, waiter, 4)
    op = new_op_id()
    await user.send({"type": "rate", "op_id": op, "payload": {"rate": 2}})
    await user.expect_error(100006, op_id=op)
    await waiter.expect_nothing()


@pytest.mark.parametrize(
    "payload",
    [{"rate": 0}, {"rate": 6}, {"rate": -1}, {"rate": 100}, {"rate": None}, {}, None],
    ids=["0", "6", "-1", "100", "null", "missing", "no-payload"],
)
async def test_rate_outside_1_to_5_is_100000(server: Server, payload: Any) -> None:
    user, waiter = await _pair(server)
    op = new_op_id()
    frame: dict[str, Any] = {"type": "rate", "op_id": op}
    if payload is not None:
        frame["payload"] = payload
    await user.send(frame)
    await user.expect_error(100000, op_id=op)
    # nothing was rated or ended: the conversation goes on and can still be rated
    ack = await user.send_text("still connected")
    await waiter.expect("message_text", id=ack["id"])
    await _rate(user, waiter, 5)


async def test_rating_after_the_conversation_ended_rates_the_latest(server: Server) -> None:
    user, waiter = await _pair(server)
    await waiter.send({"type": "disconnect", "payload": {"uuid": user.uuid}})
    await user.expect("disconnected")
    await waiter.expect("disconnected")
    op = new_op_id()
    await user.send({"type": "rate", "op_id": op, "payload": {"rate": 3}})
    ok = await user.expect("rate_success", op_id=op)
    assert ok["payload"] == {"rate": 3}
    op = new_op_id()
    await user.send({"type": "rate", "op_id": op, "payload": {"rate": 3}})
    await user.expect_error(100006, op_id=op)


async def test_rating_with_no_conversation_ever_is_an_error(server: Server) -> None:
    user = await server.user()
    op = new_op_id()
    await user.send({"type": "rate", "op_id": op, "payload": {"rate": 5}})
    err = await user.expect("error", op_id=op)
    assert err["payload"]["status"] in (100001, 100006), err


async def test_waiter_asks_for_a_rating(server: Server) -> None:
    user, waiter = await _pair(server)
    op = new_op_id()
    await waiter.send({"type": "rate", "op_id": op, "to": user.uuid})
    asked = await user.expect("rate", from_=waiter.uuid)
    assert asked["to"] == user.uuid
    await waiter.expect("rate_success", from_=user.uuid, op_id=op)
    # asking does not end anything; the user answers and that does
    ack = await user.send_text("ok, sure")
    await waiter.expect("message_text", id=ack["id"])
    await _rate(user, waiter, 5)


async def test_waiter_rate_for_someone_not_its_user_is_refused(server: Server) -> None:
    _, waiter = await _pair(server)
    op = new_op_id()
    await waiter.send({"type": "rate", "op_id": op, "to": str(uuid.uuid4())})
    await waiter.expect_error(100002, op_id=op)


async def test_rating_one_conversation_leaves_the_waiters_others(server: Server) -> None:
    waiter = await server.waiter()
    alice = await server.user()
    bob = await server.user()
    await pair(alice, waiter)
    await pair(bob, waiter)
    await _rate(alice, waiter, 4)
    ack = await bob.send_text("I am still here")
    await waiter.expect("message_text", from_=bob.uuid, id=ack["id"])
