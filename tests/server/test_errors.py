"""Frames the server cannot act on: error 100000/100002, frame size, rate limit.

A bad frame is answered with `error` on the same socket and never closes it;
each test then proves the socket still works (a valid message is acked and
delivered, and nothing of the bad frame was delivered).
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed

from support.client import Client, new_op_id, pair
from support.servers import MakeServer, Server

pytestmark = pytest.mark.timeout(30)

MAX_TEXT = 4096  # the default max_text_chars of the shared server
MAX_IMAGE = 2048


async def _pair(server: Server) -> tuple[Client, Client]:
    waiter = await server.waiter()
    user = await server.user()
    await pair(user, waiter)
    return user, waiter


async def _still_chatting(sender: Client, receiver: Client, to: str | None = None) -> None:
    ack = await sender.send_text("still here", to=to)
    got = await receiver.expect("message_text", from_=sender.uuid, id=ack["id"])
    assert got["payload"] == {"text": "still here"}


def _url(length: int) -> str:
    base = "https://example.com/img/"
    return base + "a" * (length - len(base) - 4) + ".png"


BAD_USER_FRAMES: dict[str, Any] = {
    "unknown-type": {"type": "fly_to_the_moon"},
    "missing-type": {"payload": {"text": "hi"}},
    "type-not-string": {"type": 7, "payload": {"text": "hi"}},
    "text-missing-payload": {"type": "message_text"},
    "text-payload-not-object": {"type": "message_text", "payload": "hi"},
    "text-missing": {"type": "message_text", "payload": {}},
    "text-not-string": {"type": "message_text", "payload": {"text": 123}},
    "text-null": {"type": "message_text", "payload": {"text": None}},
    "text-empty": {"type": "message_text", "payload": {"text": ""}},
    "text-too-long": {"type": "message_text", "payload": {"text": "x" * (MAX_TEXT + 1)}},
    "text-too-long-cjk": {"type": "message_text", "payload": {"text": "汉" * (MAX_TEXT + 1)}},
    "image-missing-payload": {"type": "message_image"},
    "image-missing": {"type": "message_image", "payload": {}},
    "image-not-string": {"type": "message_image", "payload": {"image": 42}},
    "image-javascript": {"type": "message_image", "payload": {"image": "javascript:alert(1)"}},
    "image-relative": {"type": "message_image", "payload": {"image": "/img/a.png"}},
    "image-protocol-relative": {
        "type": "message_image",
        "payload": {"image": "//example.com/a.png"},
    },
    "image-data-url": {
        "type": "message_image",
        "payload": {"image": "data:image/png;base64,iVBORw0KGgo="},
    },
    "image-ftp": {"type": "message_image", "payload": {"image": "ftp://example.com/a.png"}},
    "image-too-long": {"type": "message_image", "payload": {"image": _url(MAX_IMAGE + 1)}},
}


@pytest.mark.parametrize("case", list(BAD_USER_FRAMES))
async def test_user_invalid_frame_is_100000_and_socket_stays_usable(
    server: Server, case: str
) -> None:
    user, waiter = await _pair(server)
    op = new_op_id()
    frame = {**BAD_USER_FRAMES[case], "op_id": op}
    await user.send(frame)
    err = await user.expect_error(100000, op_id=op)
    data = err["payload"]["data"]
    assert isinstance(data, dict), err
    # the offending frame (a `null` for a field it did not have is tolerated)
    assert {k: v for k, v in data.items() if k in frame or v is not None} == frame, err
    await _still_chatting(user, waiter)  # and the waiter got nothing of the bad frame


@pytest.mark.parametrize(
    "raw",
    ["{not json", '{"type": "message_text", "payload": {"text": "x"}', "", "\xff"],
    ids=["garbage", "truncated", "empty", "odd-char"],
)
async def test_invalid_json_is_100000_with_null_data(server: Server, raw: str) -> None:
    user, waiter = await _pair(server)
    await user.send_raw(raw)
    err = await user.expect_error(100000)
    assert err["payload"]["data"] is None
    await _still_chatting(user, waiter)


@pytest.mark.parametrize(
    "raw", ["[1, 2]", '"message_text"', "42", "null"], ids=["array", "string", "number", "null"]
)
async def test_json_that_is_not_an_object_is_100000(server: Server, raw: str) -> None:
    user, waiter = await _pair(server)
    await user.send_raw(raw)
    await user.expect_error(100000)
    await _still_chatting(user, waiter)


async def test_binary_garbage_frame_is_100000(server: Server) -> None:
    user, waiter = await _pair(server)
    await user.send_raw(b"\x00\x01\x02")
    await user.expect_error(100000)
    await _still_chatting(user, waiter)


async def test_limits_are_inclusive(server: Server) -> None:
    user, waiter = await _pair(server)
    for text in ("x" * MAX_TEXT, "汉" * MAX_TEXT, "😀" * MAX_TEXT):  # chars, not bytes
        ack = await user.send_text(text)
        got = await waiter.expect("message_text", id=ack["id"])
        assert got["payload"]["text"] == text
    url = _url(MAX_IMAGE)
    assert len(url) == MAX_IMAGE
    for image in (url, "http://example.com/a.png", "https://example.com/a.png?x=1#y"):
        ack = await user.send_image(image)
        got = await waiter.expect("message_image", id=ack["id"])
        assert got["payload"] == {"image": image}


async def test_many_errors_in_a_row_do_not_close_the_socket(server: Server) -> None:
    user, waiter = await _pair(server)
    for _ in range(4):  # below the failed-auth limit: these are validation errors
        op = new_op_id()
        await user.send({"type": "message_text", "op_id": op, "payload": {"text": ""}})
        await user.expect_error(100000, op_id=op)
    await _still_chatting(user, waiter)


# --------------------------------------------------------------------------- waiter side


async def test_waiter_message_without_to_is_100000(server: Server) -> None:
    user, waiter = await _pair(server)
    op = new_op_id()
    await waiter.send({"type": "message_text", "op_id": op, "payload": {"text": "who?"}})
    await waiter.expect_error(100000, op_id=op)
    await _still_chatting(waiter, user, to=user.uuid)
    await user.expect_nothing()


@pytest.mark.parametrize("kind", ["random-uuid", "other-waiters-user", "not-a-uuid", "own-uuid"])
async def test_waiter_message_to_someone_not_its_user_is_100002(server: Server, kind: str) -> None:
    user, waiter = await _pair(server)
    other_waiter = await server.waiter()
    other_user = await server.user()
    await pair(other_user, other_waiter)  # other_waiter is the least busy one
    to = {
        "random-uuid": str(uuid.uuid4()),
        "other-waiters-user": other_user.uuid,
        "not-a-uuid": "nobody",
        "own-uuid": waiter.uuid,
    }[kind]
    for type_, payload in (
        ("message_text", {"text": "psst"}),
        ("message_image", {"image": "https://example.com/a.png"}),
    ):
        op = new_op_id()
        await waiter.send({"type": type_, "op_id": op, "to": to, "payload": payload})
        err = await waiter.expect("error", op_id=op)
        # a malformed `to` may count as invalid params; a well-formed stranger is 100002
        allowed = (100002, 100000) if kind == "not-a-uuid" else (100002,)
        assert err["payload"]["status"] in allowed, err
    await other_user.expect_nothing()
    await _still_chatting(waiter, user, to=user.uuid)


async def test_waiter_invalid_frames(server: Server) -> None:
    user, waiter = await _pair(server)
    await waiter.send_raw("{oops")
    err = await waiter.expect_error(100000)
    assert err["payload"]["data"] is None
    bad = [
        {"type": "message_text", "to": user.uuid, "payload": {"text": ""}},
        {"type": "message_text", "to": user.uuid},
        {"type": "message_image", "to": user.uuid, "payload": {"image": "javascript:x"}},
        {"type": "no_such_type"},
        {"type": "get_history", "payload": {}},
    ]
    for frame in bad:
        op = new_op_id()
        await waiter.send({**frame, "op_id": op})
        await waiter.expect_error(100000, op_id=op)
    await _still_chatting(waiter, user, to=user.uuid)
    await _still_chatting(user, waiter)


# --------------------------------------------------------------------------- frame size


async def test_frame_over_default_limit_closes_with_1009(server: Server) -> None:
    user, waiter = await _pair(server)
    other_user = await server.user()
    await pair(other_user, waiter)
    big = json.dumps({"type": "message_text", "payload": {"text": "x" * 70_000}})
    assert len(big) > 65536
    await user.send_raw(big)
    await user.expect_closed(1009)
    await waiter.expect("disconnected", from_=user.uuid)  # resume_grace=0: gone at once
    await _still_chatting(other_user, waiter)


async def test_frame_over_configured_limit_closes_only_that_socket(make_server: MakeServer) -> None:
    srv = make_server(max_frame_bytes=2048, max_users_per_waiter=1)
    w1 = await srv.waiter()
    u1 = await srv.user()
    await pair(u1, w1)
    w2 = await srv.waiter()
    u2 = await srv.user()
    await pair(u2, w2)  # w1 is full

    ack = await u1.send_text("y" * 1500)  # under the limit
    await w1.expect("message_text", id=ack["id"])

    big = json.dumps({"type": "message_text", "payload": {"text": "z" * 3000}})
    assert len(big.encode()) > 2048
    await u1.send_raw(big)
    await u1.expect_closed(1009)

    await _still_chatting(u2, w2)
    await _still_chatting(w2, u2, to=u2.uuid)


# --------------------------------------------------------------------------- rate limit


async def test_rate_limit_refuses_and_stores_nothing(make_server: MakeServer) -> None:
    srv = make_server(rate_limit=2, rate_burst=10)
    waiter = await srv.waiter()
    user = await srv.user()
    await pair(user, waiter)  # auth + connect used 2 of the 10 tokens

    ops = [new_op_id() for _ in range(16)]  # ~8 over: refused, not yet "sustained abuse"
    for i, op in enumerate(ops):
        await user.send({"type": "message_text", "op_id": op, "payload": {"text": f"m{i}"}})
    acked: dict[str, str] = {}
    errors: list[dict] = []
    for _ in ops:
        frame = await user.recv()
        assert frame["type"] in ("message_text_success", "error"), frame
        if frame["type"] == "error":
            assert frame["payload"]["status"] == 100000, frame
            assert "rate" in frame["payload"]["message"].lower(), frame
            errors.append(frame)
        else:
            acked[frame["op_id"]] = frame["id"]
    assert errors, "16 frames at once with burst 10 must hit the limit"
    assert acked, "the burst allows some frames through"
    assert len(errors) + len(acked) == len(ops)

    delivered = [(await waiter.expect("message_text"))["id"] for _ in acked]
    assert delivered == [acked[op] for op in ops if op in acked]
    await waiter.expect_nothing()

    assert user.person is not None
    await waiter.send({"type": "get_history", "payload": {"user_id": user.person.id}})
    history = await waiter.expect("message_history")
    stored = sorted(m["id"] for m in history["payload"]["data"])
    assert stored == sorted(acked.values()), "rate-limited frames must not be stored"
    # every error is a direct reply: it echoes the op_id of the frame it refuses
    assert sorted(e.get("op_id") or "<none>" for e in errors) == sorted(
        op for op in ops if op not in acked
    ), f"rate-limit errors must echo op_id (protocol section 2); got {errors[0]!r}"


async def test_sustained_flooding_closes_with_1008(make_server: MakeServer) -> None:
    srv = make_server(rate_limit=1, rate_burst=3)
    user = await srv.user()
    for i in range(40):
        try:
            await user.send({"type": "typing", "payload": {"typing": i % 2 == 0}})
        except ConnectionClosed:
            break
    limited = 0
    while True:  # replies (not_connect: no conversation) and rate-limit errors, then the close
        try:
            frame = await user.recv()
        except AssertionError as exc:
            assert "code 1008" in str(exc), exc
            break
        if frame["type"] == "error":
            assert frame["payload"]["status"] == 100000, frame
            limited += 1
    assert limited, "refusals come before the close"
