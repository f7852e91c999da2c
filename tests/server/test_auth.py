"""Authentication on both sockets: tokens, roles, frames before auth, origins."""

from __future__ import annotations

import time

import pytest

from support.client import SECRET, InvalidStatus, assert_profile, mint, new_op_id, person
from support.servers import MakeServer, Server

pytestmark = pytest.mark.timeout(30)


async def test_user_auth_success_carries_profile_and_socket_uuid(server: Server) -> None:
    who = person("user")
    user = await server.open("user")
    await user.send({"type": "auth", "payload": {"token": who.token()}})
    frame = await user.expect("auth_success")
    assert frame["payload"] == who.profile()
    assert frame["to"] == user.uuid  # the envelope check pinned it; state it for the reader


async def test_each_socket_has_its_own_uuid(server: Server) -> None:
    who = person("user")
    first = await server.user(who)
    second = await server.user(who)  # the same account on a second socket
    assert first.uuid != second.uuid


async def test_account_is_created_on_first_use_and_reused(server: Server) -> None:
    who = person("user")
    one = await server.user(who)
    two = await server.user(who)
    assert one.person == two.person
    # a later token with a changed nickname is still the same account id
    who.nickname = "Renamed"
    three = await server.open("user")
    await three.send({"type": "auth", "payload": {"token": who.token()}})
    frame = await three.expect("auth_success")
    assert frame["payload"]["id"] == who.id
    assert frame["payload"]["username"] == who.username


async def test_token_without_nickname_or_avatar(server: Server) -> None:
    who = person("user", nickname=None, avatar="")
    user = await server.open("user")
    await user.send({"type": "auth", "payload": {"token": who.token()}})
    frame = await user.expect("auth_success")
    payload = frame["payload"]
    assert set(payload) >= {"id", "username", "nickname", "avatar"}
    assert payload["id"] == who.id and payload["username"] == who.username


@pytest.mark.parametrize("role", ["waiter", "admin"])
async def test_waiter_and_admin_tokens_work_on_the_waiter_socket(server: Server, role: str) -> None:
    who = person(role)
    waiter = await server.open("waiter")
    await waiter.send({"type": "auth", "payload": {"token": who.token()}})
    frame = await waiter.expect("auth_success")
    assert_profile(frame["payload"], who)
    await waiter.send({"type": "ready"})
    await waiter.expect("ready")


async def test_user_token_on_the_waiter_socket_is_refused(server: Server) -> None:
    who = person("user")
    waiter = await server.open("waiter")
    op = new_op_id()
    await waiter.send({"type": "auth", "op_id": op, "payload": {"token": who.token()}})
    await waiter.expect_error(100002, op_id=op)
    # still not authenticated: ready is refused as unauthenticated
    await waiter.send({"type": "ready"})
    await waiter.expect_error(999999)
    # and the socket stays open for a proper waiter token
    await waiter.auth(person("waiter"))


@pytest.mark.parametrize(
    "frame",
    [
        {"type": "connect"},
        {"type": "disconnect"},
        {"type": "message_text", "payload": {"text": "hi"}},
        {"type": "message_image", "payload": {"image": "https://example.com/a.png"}},
        {"type": "get_history"},
        {"type": "rate", "payload": {"rate": 5}},
    ],
    ids=lambda f: f["type"],
)
async def test_user_frames_before_auth_are_refused(server: Server, frame: dict) -> None:
    user = await server.open("user")
    op = new_op_id()
    await user.send({**frame, "op_id": op})
    await user.expect_error(999999, op_id=op)
    await user.auth(person("user"))  # the socket is still usable


@pytest.mark.parametrize(
    "frame",
    [
        {"type": "ready"},
        {"type": "unready"},
        {"type": "get_history_session"},
        {
            "type": "message_text",
            "to": "00000000-0000-4000-8000-000000000000",
            "payload": {"text": "hi"},
        },
    ],
    ids=lambda f: f["type"],
)
async def test_waiter_frames_before_auth_are_refused(server: Server, frame: dict) -> None:
    waiter = await server.open("waiter")
    op = new_op_id()
    await waiter.send({**frame, "op_id": op})
    await waiter.expect_error(999999, op_id=op)
    await waiter.auth(person("waiter"))


def _bad_tokens() -> dict[str, object]:
    who = person("user")
    now = int(time.time())
    no_exp = who.claims()
    del no_exp["exp"]
    return {
        "wrong-signature": who.token(secret="another-secret-another-secret-0123456789"),
        "expired": mint({**who.claims(), "exp": now - 3600}),
        "alg-none": mint(who.claims(), secret="", algorithm="none"),  # type: ignore[arg-type]
        "missing-exp": mint(no_exp),
        "garbage": "not.a.token",
        "empty": "",
        "bearer-wrong-signature": "Bearer "
        + who.token(secret="another-secret-another-secret-0123456789"),
    }


@pytest.mark.parametrize("case", list(_bad_tokens()))
async def test_bad_tokens_are_refused_and_the_socket_stays_open(server: Server, case: str) -> None:
    token = _bad_tokens()[case]
    user = await server.open("user")
    op = new_op_id()
    await user.send({"type": "auth", "op_id": op, "payload": {"token": token}})
    await user.expect_error(999999, op_id=op)
    # not authenticated afterwards
    await user.send({"type": "connect"})
    await user.expect_error(999999)
    # another auth on the same socket may succeed
    await user.auth(person("user"))


async def test_auth_without_payload_is_refused(server: Server) -> None:
    user = await server.open("user")
    await user.send({"type": "auth"})
    err = await user.expect("error")
    assert err["payload"]["status"] in (999999, 100000), err
    await user.auth(person("user"))


async def test_bearer_prefix_is_accepted(server: Server) -> None:
    who = person("user")
    user = await server.open("user")
    await user.send({"type": "auth", "payload": {"token": "Bearer " + who.token()}})
    frame = await user.expect("auth_success")
    assert frame["payload"] == who.profile()


async def test_token_signed_with_the_server_secret_only(make_server: MakeServer) -> None:
    """A token valid for the test secret is refused by a server with another secret."""
    srv = make_server(secret="a-completely-different-secret-0123456789abcdef")
    who = person("user")
    user = await srv.open("user")
    await user.send({"type": "auth", "payload": {"token": who.token(SECRET)}})
    await user.expect_error(999999)
    await user.send({"type": "auth", "payload": {"token": who.token(srv.secret)}})
    await user.expect("auth_success")


async def test_allowed_origins(make_server: MakeServer) -> None:
    srv = make_server(allowed_origins="https://shop.example.com")
    good = await srv.open("user", origin="https://shop.example.com")
    await good.auth(person("user"))
    try:
        bad = await srv.open("user", origin="https://evil.example.net")
    except InvalidStatus as exc:  # refused at the handshake: fine
        assert exc.response.status_code in (403, 400), exc
        return
    # or accepted and closed at once with 1008
    await bad.expect_closed(1008)
