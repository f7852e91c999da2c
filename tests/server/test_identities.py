"""Identities that cannot collide: local accounts and the host application's users.

A local account (made with `kefu users create`) is named by tokens kefu
issues; a host application's token names its own users by `sub`, in a
namespace of their own. Every customer learns a waiter's id from
`connect_success`; a host token whose `sub` is that id must not become that
waiter, rename it or change its role or password.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from support.client import Person, mint, person, say
from support.servers import MakeServer, Server, kefu_env, run_kefu

pytestmark = pytest.mark.timeout(90)


def create_local(tmp_path: Path, username: str, role: str, password: str) -> dict[str, Any]:
    """`kefu users create` on the server's data directory; the created profile."""
    args = ["users", "create", username, "--role", role, "--password", password]
    done = run_kefu(args, kefu_env(tmp_path), tmp_path)
    assert done.returncode == 0, done.stderr
    profile: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return profile


async def login(srv: Server, username: str, password: str) -> httpx.Response:
    async with httpx.AsyncClient(trust_env=False, timeout=10) as http:
        return await http.post(
            f"{srv.url}/v1/auth/login", json={"username": username, "password": password}
        )


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    path = tmp_path / "data"
    path.mkdir()
    return path


async def test_a_host_token_with_a_waiters_id_does_not_touch_the_waiter(
    make_server: MakeServer, data_dir: Path
) -> None:
    waiter = create_local(data_dir, "agent-ann", "waiter", "ann-password-1")
    srv = make_server(data_dir=data_dir)
    signed_in = await login(srv, "agent-ann", "ann-password-1")
    assert signed_in.status_code == 200, signed_in.text
    ann_token = signed_in.json()["token"]

    w = await srv.open("waiter", "ann")
    await w.auth(token=ann_token)
    await w.send({"type": "ready"})
    await w.expect("ready")
    customer = await srv.user()
    await customer.send({"type": "connect"})
    ok = await customer.expect("connect_success", from_=w.uuid)
    assert ok["payload"]["id"] == waiter["id"]  # what every customer learns
    await w.expect("new_connection")

    # a token the host application signed, with the waiter's id as its user's id
    forged = mint(
        {"sub": waiter["id"], "role": "user", "username": "mallory", "nickname": "M", "exp": 2e9}
    )
    evil = await srv.open("user", "evil")
    await evil.send({"type": "auth", "payload": {"token": forged}})
    got = await evil.expect("auth_success")
    assert got["payload"]["id"] != waiter["id"]  # another account, with an id of its own
    assert got["payload"]["username"] == "mallory"
    # and as a waiter it is refused: its role is the token's, `user`
    evil_w = await srv.open("waiter", "evil-w")
    await evil_w.send({"type": "auth", "payload": {"token": forged}})
    await evil_w.expect_error(100002)

    # the waiter is intact: same role, name and password, and still at work
    again = await login(srv, "agent-ann", "ann-password-1")
    assert again.status_code == 200, again.text
    body = again.json()
    assert body["role"] == "waiter"
    assert body["profile"]["id"] == waiter["id"]
    assert body["profile"]["username"] == "agent-ann"
    await say(customer, w, "still served by Ann")
    # the impostor reaches nobody's conversation
    await evil.send({"type": "message_text", "payload": {"text": "hi"}})
    await evil.expect("not_connect")


async def test_a_host_token_cannot_take_a_local_username(
    make_server: MakeServer, data_dir: Path
) -> None:
    local = create_local(data_dir, "boss", "admin", "boss-password-1")
    srv = make_server(data_dir=data_dir)
    # the host application's user is also called "boss": a separate account
    host_boss = Person(id="host-42", username="boss", role="waiter", nickname="Other", avatar="")
    w = await srv.open("waiter", "host-boss")
    frame = await w.auth(host_boss)
    assert frame["payload"]["id"] == "host-42"
    # the local account keeps its name and password; sign-in finds only local accounts
    res = await login(srv, "boss", "boss-password-1")
    assert res.status_code == 200, res.text
    assert res.json()["profile"]["id"] == local["id"]
    assert res.json()["role"] == "admin"
    # a host token naming the local account's username as `sub` is yet another account
    named = person("user")
    token = mint({**named.claims(), "sub": "boss"})
    u = await srv.open("user", "sub-boss")
    await u.send({"type": "auth", "payload": {"token": token}})
    got = await u.expect("auth_success")
    assert got["payload"]["id"] == "boss"  # a host user id; unrelated to the local `boss`
    assert (await login(srv, "boss", "boss-password-1")).json()["profile"]["id"] == local["id"]


async def test_a_kefu_token_names_its_local_account_and_changes_nothing(
    make_server: MakeServer, data_dir: Path
) -> None:
    create_local(data_dir, "agent-bo", "waiter", "bo-password-1")
    srv = make_server(data_dir=data_dir)
    body = (await login(srv, "agent-bo", "bo-password-1")).json()
    w = await srv.open("waiter", "bo")
    frame = await w.auth(token=body["token"])
    assert frame["payload"] == body["profile"]
    await w.send({"type": "ready"})
    await w.expect("ready")
    u = await srv.user()
    await u.send({"type": "connect"})
    ok = await u.expect("connect_success", from_=w.uuid)
    assert ok["payload"]["id"] == body["profile"]["id"]
    # the claims of a kefu token are not believed: the account is read from the database
    forged_role = mint({"sub": body["profile"]["id"], "kefu": "local", "role": "user", "exp": 2e9})
    w2 = await srv.open("waiter", "bo-again")
    frame = await w2.auth(token=forged_role)  # still a waiter: the role is the database's
    assert frame["payload"] == body["profile"]
    await w.expect("kickout", skip=("new_connection",))
    # a kefu token for an account that does not exist is refused
    ghost = mint({"sub": "00000000000000000001", "kefu": "local", "role": "waiter", "exp": 2e9})
    g = await srv.open("waiter", "ghost")
    await g.send({"type": "auth", "payload": {"token": ghost}})
    await g.expect_error(999999)


async def test_a_host_users_profile_id_is_its_sub(server: Server) -> None:
    who = person("user")
    u = await server.user(who)  # `auth` checks the profile: id == the token's sub
    again = await server.user(who)  # and the same account the second time
    assert u.person == again.person
