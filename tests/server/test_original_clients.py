"""What a client written for the original system notices: kefu must answer as it did.

* `auth` again on an authenticated socket: `auth_success` again for the same
  account, a clear error for another account's token;
* `message` as an alias of `text` in `message_text` (the original demo pages
  predate `text`), and with `KEFU_LEGACY_TEXT_FIELD=true` `message` beside
  `text` in every text frame a client receives;
* a queued user who sends a message gets `not_connect`;
* `GET /v1/ws/status` readable from an allowed origin (CORS).
"""

from __future__ import annotations

from typing import Any

import httpx

from support.client import Client, assert_profile, new_op_id, pair, person, say
from support.servers import MakeServer, Server


async def test_auth_again_with_the_same_account_is_answered_again(server: Server) -> None:
    who = person("user")
    u = await server.user(who)
    op_id = new_op_id()
    await u.send({"type": "auth", "op_id": op_id, "payload": {"token": who.token(ttl=600)}})
    again = await u.expect("auth_success", op_id=op_id)
    assert_profile(again["payload"], who)
    w = await server.waiter()
    await pair(u, w)  # the socket still works, as the same account
    await say(u, w, "still me")


async def test_auth_again_with_another_account_is_refused_and_changes_nothing(
    server: Server,
) -> None:
    who, other = person("user"), person("user")
    u = await server.user(who)
    op_id = new_op_id()
    await u.send({"type": "auth", "op_id": op_id, "payload": {"token": other.token()}})
    err = await u.expect_error(100002, op_id=op_id)
    assert "another account" in err["payload"]["message"]
    # a bad token on an authenticated socket is the usual 999999
    await u.send({"type": "auth", "payload": {"token": "not-a-token"}})
    await u.expect_error(999999)
    w = await server.waiter()
    await pair(u, w)
    ack = await say(u, w, "who am I")
    history = await w_history(w, u.person.id if u.person else "")
    assert [e["id"] for e in history] == [ack["id"]]


async def w_history(w: Client, user_id: str) -> list[dict[str, Any]]:
    await w.send({"type": "get_history", "payload": {"user_id": user_id}})
    frame = await w.expect("message_history")
    data: list[dict[str, Any]] = frame["payload"]["data"]
    return data


async def test_message_is_an_alias_of_text(server: Server) -> None:
    u, w = await server.user(), await server.waiter()
    await pair(u, w)
    op_id = new_op_id()
    await u.send({"type": "message_text", "op_id": op_id, "payload": {"message": "old page"}})
    ack = await u.expect("message_text_success", op_id=op_id)
    assert ack["payload"] == {"text": "old page"}
    got = await w.expect("message_text", from_=u.uuid, id=ack["id"])
    assert got["payload"] == {"text": "old page"}
    # the waiter's old page too; with both fields, `text` wins
    await w.send({"type": "message_text", "to": u.uuid, "payload": {"message": "a", "text": "b"}})
    ack = await w.expect("message_text_success")
    assert ack["payload"] == {"text": "b"}
    await u.expect("message_text", payload={"text": "b"})
    # neither: the usual refusal
    await u.send({"type": "message_text", "payload": {}})
    await u.expect_error(100000)
    await u.send({"type": "message_text", "payload": {"message": "   "}})
    await u.expect_error(100000)


async def test_legacy_text_field_sends_message_beside_text(make_server: MakeServer) -> None:
    srv = make_server(legacy_text_field="true")
    u, w = await srv.user(), await srv.waiter()
    await pair(u, w)
    op_id = new_op_id()
    await u.send({"type": "message_text", "op_id": op_id, "payload": {"message": "hello"}})
    ack = await u.expect("message_text_success", op_id=op_id)
    assert ack["payload"] == {"text": "hello", "message": "hello"}
    got = await w.expect("message_text", from_=u.uuid, id=ack["id"])
    assert got["payload"] == {"text": "hello", "message": "hello"}
    await w.send({"type": "message_text", "to": u.uuid, "payload": {"message": "hi back"}})
    await w.expect("message_text_success")
    got = await u.expect("message_text", from_=w.uuid)
    assert got["payload"] == {"text": "hi back", "message": "hi back"}
    # images are left alone
    await u.send({"type": "message_image", "payload": {"image": "https://example.com/a.png"}})
    await u.expect("message_image_success", payload={"image": "https://example.com/a.png"})
    await w.expect("message_image", payload={"image": "https://example.com/a.png"})
    # history carries both fields too
    assert u.person is not None
    history = await w_history(w, u.person.id)
    texts = [e["payload"] for e in history if e["type"] == "message_text"]
    assert texts == [
        {"text": "hi back", "message": "hi back"},
        {"text": "hello", "message": "hello"},
    ]


async def test_a_queued_user_who_sends_gets_not_connect(make_server: MakeServer) -> None:
    srv = make_server(max_users_per_waiter=1)
    w = await srv.waiter()
    first, queued = await srv.user(), await srv.user()
    await pair(first, w)
    await queued.send({"type": "connect"})
    await queued.expect("connect_queue", payload={"location": 0})
    op_id = new_op_id()
    await queued.send({"type": "message_text", "op_id": op_id, "payload": {"message": "hi?"}})
    await queued.expect("not_connect", op_id=op_id)
    await queued.expect_nothing(0.3)


async def test_status_is_readable_from_an_allowed_origin(make_server: MakeServer) -> None:
    srv = make_server(allowed_origins="https://dash.example.com")
    async with httpx.AsyncClient(trust_env=False, timeout=5) as http:
        allowed = await http.get(
            f"{srv.url}/v1/ws/status", headers={"Origin": "https://dash.example.com"}
        )
        assert allowed.status_code == 200
        assert allowed.headers["access-control-allow-origin"] == "https://dash.example.com"
        assert "origin" in allowed.headers["vary"].lower()
        foreign = await http.get(
            f"{srv.url}/v1/ws/status", headers={"Origin": "https://evil.example.com"}
        )
        assert foreign.status_code == 200  # public data, but not readable by that page
        assert "access-control-allow-origin" not in foreign.headers
    star = make_server(allowed_origins="*")
    async with httpx.AsyncClient(trust_env=False, timeout=5) as http:
        any_origin = await http.get(
            f"{star.url}/v1/ws/status", headers={"Origin": "https://anywhere.example"}
        )
    assert any_origin.headers["access-control-allow-origin"] == "https://anywhere.example"
