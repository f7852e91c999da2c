"""get_history (user and waiter) and get_history_session."""

from __future__ import annotations

from typing import Any

import pytest

from support.client import (
    Client,
    Person,
    assert_profile,
    check_date,
    check_message_id,
    new_op_id,
    pair,
    say,
)
from support.servers import Server

pytestmark = pytest.mark.timeout(40)


async def _pair(server: Server, waiter: Client | None = None) -> tuple[Client, Client]:
    waiter = waiter or await server.waiter()
    user = await server.user()
    await pair(user, waiter)
    return user, waiter


async def _user_history(user: Client, payload: dict[str, Any] | None = None) -> list[dict]:
    frame: dict[str, Any] = {"type": "get_history"}
    if payload is not None:
        frame["payload"] = payload
    await user.send(frame)
    got = await user.expect("message_history")
    assert isinstance(got["payload"], list), got
    for entry in got["payload"]:
        _check_entry(entry)
    return got["payload"]


def _check_entry(entry: dict[str, Any]) -> None:
    assert set(entry) >= {"id", "sender", "receiver", "type", "payload", "date"}, entry
    check_message_id(entry["id"], "history id")
    check_date(entry["date"], "history date")
    assert entry["type"] in ("message_text", "message_image"), entry
    for side in ("sender", "receiver"):
        assert set(entry[side]) >= {"id", "username", "nickname", "avatar"}, entry


def _persons(user: Client, waiter: Client) -> tuple[Person, Person]:
    assert user.person is not None and waiter.person is not None
    return user.person, waiter.person


async def test_user_history_is_newest_first_with_profiles(server: Server) -> None:
    user, waiter = await _pair(server)
    up, wp = _persons(user, waiter)
    sent = []  # (ack, sender, receiver, type, payload)
    a = await say(user, waiter, "my order is late")
    sent.append((a, up, wp, "message_text", {"text": "my order is late"}))
    b = await say(waiter, user, "let me check")
    sent.append((b, wp, up, "message_text", {"text": "let me check"}))
    c = await say(user, waiter, image="https://example.com/receipt.png")
    sent.append((c, up, wp, "message_image", {"image": "https://example.com/receipt.png"}))
    d = await say(waiter, user, image="https://example.com/tracking.png")
    sent.append((d, wp, up, "message_image", {"image": "https://example.com/tracking.png"}))

    history = await _user_history(user)
    assert [e["id"] for e in history] == [s[0]["id"] for s in reversed(sent)]
    for entry, (ack, sender, receiver, type_, payload) in zip(history, reversed(sent), strict=True):
        assert_profile(entry["sender"], sender, "history sender")
        assert_profile(entry["receiver"], receiver, "history receiver")
        assert entry["type"] == type_
        assert entry["payload"] == payload
        assert entry["id"] == ack["id"]
    dates = [check_date(e["date"]) for e in history]
    assert dates == sorted(dates, reverse=True)


async def test_new_user_has_empty_history(server: Server) -> None:
    user = await server.user()
    assert await _user_history(user) == []


async def test_history_is_per_user(server: Server) -> None:
    waiter = await server.waiter()
    alice, _ = await _pair(server, waiter)
    bob, _ = await _pair(server, waiter)
    a = await say(alice, waiter, "alice here")
    b = await say(bob, waiter, "bob here")
    w = await say(waiter, bob, "to bob")
    assert [e["id"] for e in await _user_history(alice)] == [a["id"]]
    assert [e["id"] for e in await _user_history(bob)] == [w["id"], b["id"]]


async def test_history_spans_conversations(server: Server) -> None:
    user, waiter = await _pair(server)
    first = await user.send_text("first conversation")
    await user.send({"type": "disconnect"})
    await user.expect("disconnected")
    await waiter.expect("message_text", id=first["id"])
    await waiter.expect("disconnected")
    other = await server.waiter()
    await waiter.send({"type": "unready"})
    await waiter.expect("unready")
    await pair(user, other)
    second = await user.send_text("second conversation")
    assert [e["id"] for e in await _user_history(user)] == [second["id"], first["id"]]


async def test_history_is_capped_at_100_and_pages_with_before(server: Server) -> None:
    user, _ = await _pair(server)
    ops = [new_op_id() for _ in range(130)]
    for i, op in enumerate(ops):
        await user.send({"type": "message_text", "op_id": op, "payload": {"text": f"#{i}"}})
    ids = [(await user.expect("message_text_success"))["id"] for _ in ops]
    newest_first = ids[::-1]

    page1 = await _user_history(user)
    assert [e["id"] for e in page1] == newest_first[:100]

    page2 = await _user_history(user, {"before": page1[-1]["id"]})
    assert [e["id"] for e in page2] == newest_first[100:]
    assert [e["payload"]["text"] for e in page2] == [f"#{i}" for i in range(29, -1, -1)]

    assert await _user_history(user, {"before": page2[-1]["id"]}) == []

    small = await _user_history(user, {"limit": 7})
    assert [e["id"] for e in small] == newest_first[:7]
    mid = await _user_history(user, {"before": newest_first[9], "limit": 5})
    assert [e["id"] for e in mid] == newest_first[10:15]


@pytest.mark.parametrize("payload", [{"limit": 0}, {"limit": 101}, {"limit": -1}])
async def test_history_limit_out_of_range_is_100000(server: Server, payload: dict) -> None:
    user = await server.user()
    op = new_op_id()
    await user.send({"type": "get_history", "op_id": op, "payload": payload})
    await user.expect_error(100000, op_id=op)


async def test_waiter_gets_a_users_history(server: Server) -> None:
    user, waiter = await _pair(server)
    up, _ = _persons(user, waiter)
    a = await say(user, waiter, "question")
    b = await say(waiter, user, "answer")
    await waiter.send({"type": "get_history", "payload": {"user_id": up.id}})
    got = await waiter.expect("message_history")
    assert got["payload"]["user_id"] == up.id
    data = got["payload"]["data"]
    for entry in data:
        _check_entry(entry)
    assert [e["id"] for e in data] == [b["id"], a["id"]]
    assert data[1]["payload"] == {"text": "question"}
    assert_profile(data[1]["sender"], up)


async def test_session_history_one_entry_per_user_newest_first(server: Server) -> None:
    waiter = await server.waiter()
    wp = waiter.person
    assert wp is not None
    alice, _ = await _pair(server, waiter)
    ap = alice.person
    assert ap is not None
    await say(alice, waiter, "alice 1")
    await alice.send({"type": "disconnect"})
    await alice.expect("disconnected")
    await waiter.expect("disconnected")

    bob, _ = await _pair(server, waiter)
    bp = bob.person
    assert bp is not None
    await say(bob, waiter, "bob 1")
    last_bob = await say(waiter, bob, "bye bob")

    # alice comes back for a second conversation: still one entry for her, now the newest
    await pair(alice, waiter)
    last_alice = await say(alice, waiter, "alice again")

    await waiter.send({"type": "get_history_session"})
    got = await waiter.expect("session_history")
    payload = got["payload"]
    assert payload["user_id"] == wp.id
    data = payload["data"]
    assert [s["user"]["id"] for s in data] == [ap.id, bp.id]
    for session, who, last in ((data[0], ap, last_alice), (data[1], bp, last_bob)):
        assert set(session) >= {"id", "user", "waiter", "history", "created_at"}, session
        assert_profile(session["user"], who, "session user")
        assert_profile(session["waiter"], wp, "session waiter")
        check_date(session["created_at"], "session created_at")
        assert [m["id"] for m in session["history"]] == [last["id"]]
        _check_entry(session["history"][0])
    assert check_date(data[0]["created_at"]) > check_date(data[1]["created_at"])


async def test_session_history_is_per_waiter(server: Server) -> None:
    w1 = await server.waiter(label="w1")
    user, _ = await _pair(server, w1)
    await user.send_text("for w1")
    w2 = await server.waiter(ready=False, label="w2")
    await w2.send({"type": "get_history_session"})
    got = await w2.expect("session_history")
    assert w2.person is not None
    assert got["payload"]["user_id"] == w2.person.id
    assert got["payload"]["data"] == []
