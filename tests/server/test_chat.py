"""A conversation: connect, messages both ways, acks, retries, disconnect, typing, read."""

from __future__ import annotations

import uuid

import pytest

from support.client import Client, new_op_id, pair
from support.servers import Server

pytestmark = pytest.mark.timeout(30)


async def _pair(server: Server) -> tuple[Client, Client]:
    waiter = await server.waiter()
    user = await server.user()
    await pair(user, waiter)
    return user, waiter


async def _history_ids(user: Client) -> list[str]:
    await user.send({"type": "get_history"})
    frame = await user.expect("message_history")
    assert isinstance(frame["payload"], list), frame
    return [m["id"] for m in frame["payload"]]


async def test_connect_pairs_user_with_the_ready_waiter(server: Server) -> None:
    # `pair` checks: connect_success from the waiter's socket with its profile and uuid,
    # new_connection from the user's socket with the user's profile and uuid.
    user, waiter = await _pair(server)
    assert user.uuid != waiter.uuid


async def test_connect_again_while_connected_repeats_connect_success(server: Server) -> None:
    user, waiter = await _pair(server)
    await user.send({"type": "connect"})
    again = await user.expect("connect_success", from_=waiter.uuid)
    assert again["payload"]["uuid"] == waiter.uuid
    await waiter.expect_nothing()  # no second conversation


async def test_text_from_user_reaches_waiter(server: Server) -> None:
    user, waiter = await _pair(server)
    op = new_op_id()
    text = "你好 — hello 👋 <b>not html</b>"
    await user.send({"type": "message_text", "op_id": op, "payload": {"text": text}})
    ack = await user.expect("message_text_success", op_id=op)
    assert ack["payload"] == {"text": text}
    got = await waiter.expect("message_text", from_=user.uuid, id=ack["id"])
    assert got["payload"] == {"text": text}


async def test_text_from_waiter_reaches_user(server: Server) -> None:
    user, waiter = await _pair(server)
    op = new_op_id()
    await waiter.send(
        {
            "type": "message_text",
            "op_id": op,
            "to": user.uuid,
            "payload": {"text": "How can I help?"},
        }
    )
    ack = await waiter.expect("message_text_success", op_id=op)
    assert ack["payload"] == {"text": "How can I help?"}
    got = await user.expect("message_text", from_=waiter.uuid, id=ack["id"])
    assert got["payload"] == {"text": "How can I help?"}


async def test_images_both_ways(server: Server) -> None:
    user, waiter = await _pair(server)
    url = "https://cdn.example.com/p/1.png?size=large"
    ack = await user.send_image(url)
    got = await waiter.expect("message_image", from_=user.uuid, id=ack["id"])
    assert got["payload"] == {"image": url}
    url2 = "http://example.com/answer.jpg"
    ack2 = await waiter.send_image(url2, to=user.uuid)
    got2 = await user.expect("message_image", from_=waiter.uuid, id=ack2["id"])
    assert got2["payload"] == {"image": url2}
    assert ack2["id"] > ack["id"]


async def test_message_without_op_id_is_acked(server: Server) -> None:
    user, waiter = await _pair(server)
    await user.send({"type": "message_text", "payload": {"text": "no op id"}})
    ack = await user.expect("message_text_success")
    assert ack["payload"] == {"text": "no op id"}
    await waiter.expect("message_text", id=ack["id"])


async def test_ids_increase_and_order_is_kept(server: Server) -> None:
    """50 messages sent back to back: acks and deliveries in send order, ids increasing."""
    user, waiter = await _pair(server)
    ops = [new_op_id() for _ in range(50)]
    for i, op in enumerate(ops):
        await user.send({"type": "message_text", "op_id": op, "payload": {"text": f"n{i}"}})
    acks = [await user.expect("message_text_success") for _ in ops]
    assert [a["op_id"] for a in acks] == ops
    ids = [a["id"] for a in acks]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    got = [await waiter.expect("message_text", from_=user.uuid) for _ in ops]
    assert [g["id"] for g in got] == ids
    assert [g["payload"]["text"] for g in got] == [f"n{i}" for i in range(50)]


async def test_interleaved_messages_get_time_ordered_ids(server: Server) -> None:
    user, waiter = await _pair(server)
    ids = []
    for i in range(5):
        a = await user.send_text(f"u{i}")
        await waiter.expect("message_text", id=a["id"])
        b = await waiter.send_text(f"w{i}", to=user.uuid)
        await user.expect("message_text", id=b["id"])
        ids += [a["id"], b["id"]]
    assert ids == sorted(ids)


async def test_waiter_routes_to_the_right_user(server: Server) -> None:
    waiter = await server.waiter()
    alice = await server.user()
    bob = await server.user()
    await pair(alice, waiter)
    await pair(bob, waiter)
    a = await waiter.send_text("for alice", to=alice.uuid)
    b = await waiter.send_text("for bob", to=bob.uuid)
    assert (await alice.expect("message_text", id=a["id"]))["payload"]["text"] == "for alice"
    assert (await bob.expect("message_text", id=b["id"]))["payload"]["text"] == "for bob"
    c = await bob.send_text("from bob")
    got = await waiter.expect("message_text", id=c["id"])
    assert got["from"] == bob.uuid
    await alice.expect_nothing()


async def test_user_not_in_a_conversation_gets_not_connect(server: Server) -> None:
    user = await server.user()
    op = new_op_id()
    await user.send({"type": "message_text", "op_id": op, "payload": {"text": "anyone?"}})
    await user.expect("not_connect", op_id=op)
    op = new_op_id()
    await user.send(
        {"type": "message_image", "op_id": op, "payload": {"image": "https://example.com/a.png"}}
    )
    await user.expect("not_connect", op_id=op)


async def test_queued_user_gets_not_connect(server: Server) -> None:
    user = await server.user()
    await user.send({"type": "connect"})
    await user.expect("connect_queue", payload={"location": 0})  # no waiter at all
    op = new_op_id()
    await user.send({"type": "message_text", "op_id": op, "payload": {"text": "hello?"}})
    await user.expect("not_connect", op_id=op)


# --------------------------------------------------------------------------- retries


async def test_same_op_id_same_body_is_stored_once(server: Server) -> None:
    user, waiter = await _pair(server)
    op = new_op_id()
    first = await user.send_text("only once", op_id=op)
    await waiter.expect("message_text", id=first["id"])
    second = await user.send_text("only once", op_id=op)
    assert second["id"] == first["id"]
    ids = await _history_ids(user)
    assert ids.count(first["id"]) == 1
    assert len(ids) == 1


async def test_same_op_id_other_body_is_100006(server: Server) -> None:
    user, waiter = await _pair(server)
    op = new_op_id()
    first = await user.send_text("original", op_id=op)
    await waiter.expect("message_text", id=first["id"])
    await user.send({"type": "message_text", "op_id": op, "payload": {"text": "changed"}})
    await user.expect_error(100006, op_id=op)
    await waiter.expect_nothing()
    ids = await _history_ids(user)
    assert ids == [first["id"]]


async def test_op_id_is_per_account(server: Server) -> None:
    """Two accounts may use the same op_id: both messages are stored."""
    user, waiter = await _pair(server)
    op = new_op_id()
    a = await user.send_text("from the user", op_id=op)
    await waiter.expect("message_text", id=a["id"])
    b = await waiter.send_text("from the waiter", to=user.uuid, op_id=op)
    await user.expect("message_text", id=b["id"])
    assert a["id"] != b["id"]


# --------------------------------------------------------------------------- ending


async def test_user_disconnect_ends_the_conversation(server: Server) -> None:
    user, waiter = await _pair(server)
    await user.send({"type": "disconnect"})
    await user.expect("disconnected", from_=waiter.uuid)
    await waiter.expect("disconnected", from_=user.uuid)
    # the conversation is over on both sides
    op = new_op_id()
    await user.send({"type": "message_text", "op_id": op, "payload": {"text": "late"}})
    await user.expect("not_connect", op_id=op)
    op = new_op_id()
    await waiter.send(
        {"type": "message_text", "op_id": op, "to": user.uuid, "payload": {"text": "late"}}
    )
    await waiter.expect_error(100002, op_id=op)


async def test_waiter_disconnects_a_user(server: Server) -> None:
    user, waiter = await _pair(server)
    await waiter.send({"type": "disconnect", "payload": {"uuid": user.uuid}})
    await user.expect("disconnected", from_=waiter.uuid)
    await waiter.expect("disconnected", from_=user.uuid)
    op = new_op_id()
    await user.send({"type": "message_text", "op_id": op, "payload": {"text": "hello?"}})
    await user.expect("not_connect", op_id=op)


async def test_user_can_connect_again_after_disconnect(server: Server) -> None:
    user, waiter = await _pair(server)
    await user.send({"type": "disconnect"})
    await user.expect("disconnected")
    await waiter.expect("disconnected")
    await pair(user, waiter)
    ack = await user.send_text("back again")
    await waiter.expect("message_text", id=ack["id"])


@pytest.mark.parametrize("whose", ["stranger", "other-waiters-user", "garbage"])
async def test_waiter_disconnect_of_someone_else_is_refused(server: Server, whose: str) -> None:
    user, waiter = await _pair(server)
    other_waiter = await server.waiter()
    other_user = await server.user()
    await pair(other_user, other_waiter)
    target = {"stranger": str(uuid.uuid4()), "other-waiters-user": other_user.uuid, "garbage": "x"}[
        whose
    ]
    op = new_op_id()
    await waiter.send({"type": "disconnect", "op_id": op, "payload": {"uuid": target}})
    err = await waiter.expect("error", op_id=op)
    allowed = (100002, 100000) if whose == "garbage" else (100002,)
    assert err["payload"]["status"] in allowed, err
    await other_user.expect_nothing()
    ack = await other_user.send_text("still connected")
    await other_waiter.expect("message_text", id=ack["id"])
    await user.expect_nothing(0.05)


async def test_waiter_disconnect_without_uuid_is_100000(server: Server) -> None:
    user, waiter = await _pair(server)
    op = new_op_id()
    await waiter.send({"type": "disconnect", "op_id": op})
    await waiter.expect_error(100000, op_id=op)
    await user.expect_nothing()


async def test_closing_the_user_socket_ends_the_conversation(server: Server) -> None:
    """With resume_grace=0 a closed user socket is a disconnect."""
    user, waiter = await _pair(server)
    uid = user.uuid
    await user.close()
    await waiter.expect("disconnected", from_=uid)


# --------------------------------------------------------------------------- [ext] typing, read


async def test_typing_is_forwarded_and_not_stored(server: Server) -> None:
    user, waiter = await _pair(server)
    await user.send({"type": "typing", "payload": {"typing": True}})
    got = await waiter.expect("typing", from_=user.uuid)
    assert got["payload"] == {"typing": True}
    await waiter.send({"type": "typing", "to": user.uuid, "payload": {"typing": False}})
    got = await user.expect("typing", from_=waiter.uuid)
    assert got["payload"] == {"typing": False}
    await user.expect_nothing(0.1)
    assert await _history_ids(user) == []


async def test_read_receipts_are_forwarded(server: Server) -> None:
    user, waiter = await _pair(server)
    a = await waiter.send_text("please read me", to=user.uuid)
    await user.expect("message_text", id=a["id"])
    await user.send({"type": "read", "payload": {"id": a["id"]}})
    got = await waiter.expect("read", from_=user.uuid)
    assert got["payload"]["id"] == a["id"]

    b = await user.send_text("and you me")
    await waiter.expect("message_text", id=b["id"])
    await waiter.send({"type": "read", "to": user.uuid, "payload": {"id": b["id"]}})
    got = await user.expect("read", from_=waiter.uuid)
    assert got["payload"]["id"] == b["id"]


@pytest.mark.parametrize(
    "frame",
    [
        {"type": "typing", "payload": {"typing": True}},
        {"type": "read", "payload": {"id": "00000000000000000001"}},
    ],
    ids=["typing", "read"],
)
@pytest.mark.parametrize("state", ["never connected", "queued", "after disconnect"])
async def test_user_typing_or_read_outside_a_conversation_gets_not_connect(
    server: Server, frame: dict[str, object], state: str
) -> None:
    waiter = await server.waiter(ready=state != "queued")
    user = await server.user()
    if state == "queued":  # the only waiter is not ready
        await user.send({"type": "connect"})
        await user.expect("connect_queue", payload={"location": 0})
    elif state == "after disconnect":
        await pair(user, waiter)
        await user.send({"type": "disconnect"})
        await user.expect("disconnected", from_=waiter.uuid)
        await waiter.expect("disconnected", from_=user.uuid)
    op = new_op_id()
    await user.send({**frame, "op_id": op})
    await user.expect("not_connect", op_id=op)
    await waiter.expect_nothing()  # the user's frame was handled: nothing went to the waiter
    await user.send({"type": "get_history"})  # the socket is open and answered
    await user.expect("message_history")


@pytest.mark.parametrize("kind", ["typing", "read"])
@pytest.mark.parametrize("whose", ["stranger", "other-waiters-user", "left"])
async def test_waiter_typing_or_read_to_someone_not_its_user_is_100002(
    server: Server, kind: str, whose: str
) -> None:
    user, waiter = await _pair(server)
    other_waiter = await server.waiter()
    other_user = await server.user()
    await pair(other_user, other_waiter)
    target = {"stranger": str(uuid.uuid4()), "other-waiters-user": other_user.uuid}.get(whose)
    if whose == "left":  # was its user: the conversation is over
        await user.send({"type": "disconnect"})
        await user.expect("disconnected", from_=waiter.uuid)
        await waiter.expect("disconnected", from_=user.uuid)
        target = user.uuid
    payload = {"typing": True} if kind == "typing" else {"id": "00000000000000000001"}
    op = new_op_id()
    await waiter.send({"type": kind, "op_id": op, "to": target, "payload": payload})
    await waiter.expect_error(100002, op_id=op)
    await other_user.expect_nothing()
    await user.expect_nothing()
    # the waiter's socket is fine: its other conversation goes on
    if whose != "left":
        await waiter.send({"type": kind, "to": user.uuid, "payload": payload})
        got = await user.expect(kind, from_=waiter.uuid)
        assert got["payload"] == payload


@pytest.mark.parametrize("kind", ["typing", "read"])
async def test_waiter_typing_or_read_without_to_is_100000(server: Server, kind: str) -> None:
    user, waiter = await _pair(server)
    payload = {"typing": True} if kind == "typing" else {"id": "00000000000000000001"}
    op = new_op_id()
    await waiter.send({"type": kind, "op_id": op, "payload": payload})
    await waiter.expect_error(100000, op_id=op)
    await user.expect_nothing()
