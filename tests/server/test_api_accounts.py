"""`/v1/api/accounts` over real HTTP and sockets (`kefu serve`), on SQLite and PostgreSQL.

Every endpoint: a good call, bad input, no credentials (401), a read-only key
on a write and a non-admin token (403). Then what the lifecycle does to a
running desk: a disabled account's sockets close with 4403 and its tokens and
password stop working; a logout refuses older tokens; an erasure leaves no
text of the person's, and their conversations as anonymous records.
"""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from support.api import (
    admin_token,
    api,
    backend,  # noqa: F401 - the fixture
    backend_settings,
    create_key,
    error_of,
    user_token,
)
from support.client import Client, Person, pair, person
from support.servers import MakeServer, Server

pytestmark = pytest.mark.timeout(120)

CLOSE_REVOKED = 4403
NOT_AUTHENTICATED = 999999
PUBLIC = {
    "id",
    "username",
    "nickname",
    "avatar",
    "role",
    "kind",
    "external_id",
    "created_at",
    "disabled",
    "erased",
}


@pytest.fixture
def srv(backend: str, make_server: MakeServer) -> Server:  # noqa: F811
    return make_server(**backend_settings(backend))


async def _create(http: httpx.AsyncClient, **body: Any) -> dict[str, Any]:
    resp = await http.post("/accounts", json=body)
    assert resp.status_code == 201, resp.text
    account: dict[str, Any] = resp.json()
    assert set(account) == PUBLIC, account  # never a password or its hash
    return account


async def _login(srv: Server, username: str, password: str) -> httpx.Response:
    async with httpx.AsyncClient(base_url=srv.url, trust_env=False, timeout=10) as http:
        return await http.post("/v1/auth/login", json={"username": username, "password": password})


async def test_every_endpoint_refuses_callers_without_the_right(srv: Server) -> None:
    key = create_key(srv)
    async with api(srv, key) as http:
        target = (await _create(http, username="target"))["id"]
    calls = [
        ("GET", "/accounts", None, False),
        ("POST", "/accounts", {"username": "someone"}, True),
        ("GET", f"/accounts/{target}", None, False),
        ("PATCH", f"/accounts/{target}", {"nickname": "x"}, True),
        ("DELETE", f"/accounts/{target}", None, True),
        ("POST", f"/accounts/{target}/logout", None, True),
    ]
    read_only = create_key(srv, read_only=True)
    for method, path, body, writes in calls:
        async with api(srv) as http:
            error_of(await http.request(method, path, json=body), 401)
        async with api(srv, "kefu_" + "y" * 43) as http:
            error_of(await http.request(method, path, json=body), 401)
        async with api(srv, read_only) as http:
            resp = await http.request(method, path, json=body)
            if writes:
                assert "read-only" in error_of(resp, 403)
            else:
                assert resp.status_code == 200, resp.text
        for role in ("user", "waiter"):
            async with api(srv, user_token(role)) as http:
                error_of(await http.request(method, path, json=body), 403)
    async with api(srv, key) as http:  # nothing was changed by the refused calls
        account = (await http.get(f"/accounts/{target}")).json()
        assert account["nickname"] is None and not account["disabled"]
        names = [a["username"] for a in (await http.get("/accounts")).json()["items"]]
        assert "someone" not in names


async def test_create_show_and_list(srv: Server) -> None:
    async with api(srv, admin_token()) as http:
        alice = await _create(
            http,
            username="alice",
            role="waiter",
            nickname="Alice",
            avatar="https://example.com/a.png",
            password="correct horse",
        )
        assert alice | {"id": "-", "created_at": "-"} == {
            "id": "-",
            "username": "alice",
            "nickname": "Alice",
            "avatar": "https://example.com/a.png",
            "role": "waiter",
            "kind": "local",
            "external_id": None,
            "created_at": "-",
            "disabled": False,
            "erased": False,
        }
        assert alice["created_at"].endswith("Z")
        assert (await http.get(f"/accounts/{alice['id']}")).json() == alice
        assert (await _login(srv, "alice", "correct horse")).status_code == 200

        # bad input: 422, one shape
        for body in (
            {},
            {"username": ""},
            {"username": " padded"},
            {"username": "x" * 65},
            {"username": "erased-me"},
            {"username": "bob", "role": "king"},
            {"username": "bob", "avatar": "javascript:alert(1)"},
            {"username": "bob", "password": "short"},
            {"username": "bob", "nickname": "a\x00b"},
            {"username": "bob", "is_admin": True},
            ["bob"],
        ):
            error_of(await http.post("/accounts", json=body), 422)
        resp = await http.post(
            "/accounts", content=b"{not json", headers={"Content-Type": "application/json"}
        )
        error_of(resp, 422)
        assert "alice" in error_of(await http.post("/accounts", json={"username": "alice"}), 409)
        error_of(await http.get("/accounts/no-such-id"), 404)

        # list: newest first, filters, pages that neither skip nor repeat
        made = [alice["id"]]
        for n in range(5):
            made.append((await _create(http, username=f"user{n}", nickname=f"Nick {n}"))["id"])
        host = person("user")  # an external account, made by its first token
        waiter = await srv.user(host)
        await waiter.close()
        listed = (await http.get("/accounts")).json()
        assert listed["next"] is None
        ids = [a["id"] for a in listed["items"]]
        assert ids[: len(made) + 1] == [host.id, *reversed(made)]
        external = listed["items"][0]
        assert external["kind"] == "external" and external["external_id"] == host.id
        seen: list[str] = []
        cursor = None
        while True:
            params: dict[str, Any] = {"limit": 2}
            if cursor:
                params["cursor"] = cursor
            page = (await http.get("/accounts", params=params)).json()
            assert len(page["items"]) <= 2
            seen += [a["id"] for a in page["items"]]
            cursor = page["next"]
            if cursor is None:
                break
        assert seen == ids
        waiters = (await http.get("/accounts", params={"role": "waiter"})).json()["items"]
        assert [a["id"] for a in waiters] == [alice["id"]]
        found = (await http.get("/accounts", params={"q": "NICK 3"})).json()["items"]
        assert [a["username"] for a in found] == ["user3"]
        found = (await http.get("/accounts", params={"q": "ser"})).json()["items"]
        assert {a["username"] for a in found} >= {"user0", "user4", host.username}
        assert (await http.get("/accounts", params={"q": "%"})).json()["items"] == []
        for params in (
            {"limit": 0},
            {"limit": 201},
            {"limit": "ten"},
            {"cursor": "garbage!"},
            {"cursor": "WzEsMl0"},  # a well-formed cursor of another shape: [1,2]
            {"role": "king"},
            {"q": "x" * 65},
        ):
            error_of(await http.get("/accounts", params=params), 422)


async def test_change_an_account(srv: Server) -> None:
    async with api(srv, create_key(srv)) as http:
        bob = await _create(http, username="bob", nickname="Bob", password="first password")
        path = f"/accounts/{bob['id']}"
        resp = await http.patch(
            path,
            json={
                "nickname": None,
                "avatar": "https://example.com/b.png",
                "role": "waiter",
                "password": "second password",
            },
        )
        assert resp.status_code == 200, resp.text
        changed = resp.json()
        assert (changed["nickname"], changed["avatar"], changed["role"]) == (
            None,
            "https://example.com/b.png",
            "waiter",
        )
        assert changed["username"] == "bob" and changed["created_at"] == bob["created_at"]
        assert (await http.get(path)).json() == changed
        assert (await _login(srv, "bob", "first password")).status_code == 401
        signed_in = await _login(srv, "bob", "second password")
        assert signed_in.status_code == 200 and signed_in.json()["role"] == "waiter"
        # a field left out stays; an empty change changes nothing
        assert (await http.patch(path, json={"nickname": "B"})).json()["avatar"] == changed[
            "avatar"
        ]
        assert (await http.patch(path, json={})).json()["nickname"] == "B"
        for body in (
            {"role": "king"},
            {"avatar": "ftp://x/y.png"},
            {"avatar": None},
            {"password": "short"},
            {"disabled": "maybe"},
            {"username": "renamed"},
            {"nickname": "x" * 129},
        ):
            error_of(await http.patch(path, json=body), 422)
        error_of(await http.patch("/accounts/nobody", json={"nickname": "x"}), 404)
        # an external account's profile is its tokens': only `disabled` may change here
        host = person("user")
        await (await srv.user(host)).close()
        message = error_of(await http.patch(f"/accounts/{host.id}", json={"nickname": "x"}), 409)
        assert "tokens" in message
        assert (await http.get(f"/accounts/{host.id}")).json()["nickname"] == host.nickname


async def _serving(srv: Server, waiter_person: Person) -> tuple[Client, Client]:
    waiter = await srv.waiter(waiter_person)
    user = await srv.user()
    await pair(user, waiter)
    return waiter, user


async def test_disable_closes_the_sockets_and_refuses_tokens_and_passwords(srv: Server) -> None:
    key = create_key(srv)
    async with api(srv, key) as http:
        wendy = await _create(http, username="wendy", role="waiter", password="wendy's password")
        token = (await _login(srv, "wendy", "wendy's password")).json()["token"]
        who = Person(wendy["id"], "wendy", "waiter", None, "")
        waiter = await srv.open("waiter")
        await waiter.auth(who, token=token)
        await waiter.send({"type": "ready"})
        await waiter.expect("ready")
        user = await srv.user()
        await pair(user, waiter)

        started = time.monotonic()
        resp = await http.patch(f"/accounts/{wendy['id']}", json={"disabled": True})
        assert resp.status_code == 200 and resp.json()["disabled"] is True, resp.text
        await waiter.expect_closed(CLOSE_REVOKED)
        closed_after = time.monotonic() - started
        # its user is back in the queue at once (no resume grace for a disabled waiter)
        await user.expect("disconnected", from_=waiter.uuid)
        await user.expect("connect_queue", payload={"location": 0})
        print(f"disabled waiter's socket closed {closed_after * 1000:.0f} ms after the PATCH")

        again = await srv.open("waiter")
        await again.send({"type": "auth", "payload": {"token": token}})
        assert "disabled" in (await again.expect_error(NOT_AUTHENTICATED))["payload"]["message"]
        assert (await _login(srv, "wendy", "wendy's password")).status_code == 401

        resp = await http.patch(f"/accounts/{wendy['id']}", json={"disabled": False})
        assert resp.json()["disabled"] is False
        await again.auth(who, token=token)  # the same token works again
        await again.send({"type": "ready"})
        await again.expect("ready")
        await user.expect("connect_success", from_=again.uuid)


async def test_a_disabled_host_user_is_refused_on_every_socket(srv: Server) -> None:
    host = person("user")
    async with api(srv, create_key(srv)) as http:
        waiter, user = await _serving(srv, person("waiter"))
        tab = await srv.user(user.person)  # a second tab of the same user: it holds the chat now
        await tab.expect("connect_success", from_=waiter.uuid)
        await waiter.expect("new_connection", from_=tab.uuid)
        uid = user.person.id if user.person else ""
        resp = await http.patch(f"/accounts/{uid}", json={"disabled": True})
        assert resp.status_code == 200, resp.text
        await user.expect_closed(CLOSE_REVOKED)
        await tab.expect_closed(CLOSE_REVOKED)
        await waiter.expect("disconnected", from_=tab.uuid)
        again = await srv.open("user")
        await again.send({"type": "auth", "payload": {"token": user.person.token()}})  # type: ignore[union-attr]
        await again.expect_error(NOT_AUTHENTICATED)
        # someone else is not concerned
        other = await srv.user(host)
        await other.send({"type": "connect"})
        await other.expect("connect_success")


async def test_logout_refuses_older_tokens_and_accepts_new_ones(srv: Server) -> None:
    async with api(srv, create_key(srv)) as http:
        host = person("user")
        old = host.token(iat=time.time() - 5)
        user = await srv.open("user")
        await user.auth(host, token=old)
        resp = await http.post(f"/accounts/{host.id}/logout")
        assert resp.status_code == 200, resp.text
        await user.expect_closed(CLOSE_REVOKED)
        for token in (old, host.token()):  # older, and without `iat`
            refused = await srv.open("user")
            await refused.send({"type": "auth", "payload": {"token": token}})
            message = (await refused.expect_error(NOT_AUTHENTICATED))["payload"]["message"]
            assert "logout" in message
        fresh = await srv.open("user")
        await fresh.auth(host, token=host.token(iat=time.time()))
        error_of(await http.post("/accounts/nobody/logout"), 404)

        # a local account: the console's sign-in after the logout gives a token that works
        sam = await _create(http, username="sam", role="waiter", password="sam's password")
        first = (await _login(srv, "sam", "sam's password")).json()["token"]
        assert (await http.post(f"/accounts/{sam['id']}/logout")).status_code == 200
        second = (await _login(srv, "sam", "sam's password")).json()["token"]
        who = Person(sam["id"], "sam", "waiter", None, "")
        refused = await srv.open("waiter")
        await refused.send({"type": "auth", "payload": {"token": first}})
        await refused.expect_error(NOT_AUTHENTICATED)
        await (await srv.open("waiter")).auth(who, token=second)
    # an admin's own token is refused by the API after its logout
    boss = person("admin")
    token = admin_token(boss)
    async with api(srv, token) as http:
        assert (await http.get("/whoami")).status_code == 200
        assert (await http.post(f"/accounts/{boss.id}/logout")).status_code == 200
        error_of(await http.get("/whoami"), 401)


async def test_erase_removes_what_the_person_wrote_and_keeps_the_conversation(
    srv: Server,
) -> None:
    waiter, user = await _serving(srv, person("waiter"))
    assert user.person is not None
    secret = f"my card number is {time.time_ns()}"
    await user.send_text(secret)
    await waiter.expect("message_text")
    await user.send_image("https://example.com/private/photo.png")
    await waiter.expect("message_image")
    await waiter.send_text("noted, thanks", to=user.uuid)
    await user.expect("message_text")
    uid = user.person.id
    async with api(srv, create_key(srv)) as http:
        resp = await http.delete(f"/accounts/{uid}")
        assert resp.status_code == 200, resp.text
        erased = resp.json()
        assert erased | {"created_at": "-"} == {
            "id": uid,
            "username": f"erased-{uid}",
            "nickname": None,
            "avatar": "",
            "role": "user",
            "kind": "external",
            "external_id": None,
            "created_at": "-",
            "disabled": True,
            "erased": True,
        }
        await user.expect_closed(CLOSE_REVOKED)
        await waiter.expect("disconnected", from_=user.uuid)
        again = await http.delete(f"/accounts/{uid}")  # idempotent
        assert again.status_code == 200 and again.json() == erased
        error_of(await http.delete("/accounts/nobody"), 404)
        error_of(await http.patch(f"/accounts/{uid}", json={"disabled": False}), 409)

    await waiter.send({"type": "get_history", "payload": {"user_id": uid}})
    history = (await waiter.expect("message_history"))["payload"]["data"]
    assert len(history) == 3  # the conversation's messages are still there...
    theirs = [m for m in history if m["sender"]["id"] == uid]
    assert [m["payload"] for m in theirs] == [  # ...but nothing the person wrote
        {"image": "", "erased": True},
        {"text": "", "erased": True},
    ]
    assert all(m["sender"]["username"] == f"erased-{uid}" for m in theirs)
    assert secret not in str(history) and "photo.png" not in str(history)
    assert [m["payload"]["text"] for m in history if m["sender"]["id"] != uid] == ["noted, thanks"]
    await waiter.send({"type": "get_history_session"})
    sessions = (await waiter.expect("session_history"))["payload"]["data"]
    assert [s["user"]["id"] for s in sessions] == [uid]  # an anonymous record
    assert sessions[0]["user"]["username"] == f"erased-{uid}"
    # the host application's token of the person now makes a new, empty account
    newcomer = await srv.open("user")
    await newcomer.send({"type": "auth", "payload": {"token": user.person.token()}})
    fresh = await newcomer.expect("auth_success")
    assert fresh["payload"]["id"] != uid
