"""Webhooks over real HTTP (`kefu serve`, SQLite and PostgreSQL) to a real local receiver.

The receiver (`support.receiver`) checks the signature of every delivery.
Covered: the API (bad input, no credentials, read-only keys), private
addresses refused without KEFU_WEBHOOK_ALLOW_PRIVATE (at creation, and at
delivery after the setting went away), every event in order per
conversation, a receiver down for a while, a receiver answering 500 then
200 (backoff), and a SIGKILL between the change and the delivery.
"""

from __future__ import annotations

import asyncio
import base64
import json
import sqlite3
import time
from collections import defaultdict
from collections.abc import AsyncIterator
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
)
from support.client import Client, new_op_id, pair, say
from support.receiver import Received, Receiver
from support.servers import MakeServer, Server
from support.services import in_thread

pytestmark = pytest.mark.timeout(180)

HOOKED = {"webhook_allow_private": "true", "webhook_retry_base": 0.3}
EVENTS = [
    "conversation.queued",
    "conversation.assigned",
    "conversation.transferred",
    "conversation.closed",
    "conversation.rated",
    "message.created",
    "account.created",
    "account.updated",
    "account.erased",
]


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    r = await Receiver().start()
    yield r
    await r.close()


@pytest.fixture
def srv(backend: str, make_server: MakeServer) -> Server:  # noqa: F811
    return make_server(**backend_settings(backend), **HOOKED)


async def subscribe(
    srv: Any, key: str, receiver: Receiver, events: list[str] | None = None
) -> dict[str, Any]:
    async with api(srv, key) as http:
        resp = await http.post("/webhooks", json={"url": receiver.url, "events": events or ["*"]})
    assert resp.status_code == 201, resp.text
    hook: dict[str, Any] = resp.json()
    assert set(hook) == {"id", "url", "events", "created_at", "secret"}, hook
    receiver.use(hook["secret"])
    return hook


async def deliveries(srv: Any, key: str, hook: dict[str, Any]) -> list[dict[str, Any]]:
    """Every delivery of `hook`, newest first, through the API (all pages)."""
    out: list[dict[str, Any]] = []
    cursor = None
    async with api(srv, key) as http:
        while True:
            params: dict[str, Any] = {"limit": 200, **({"cursor": cursor} if cursor else {})}
            resp = await http.get(f"/webhooks/{hook['id']}/deliveries", params=params)
            assert resp.status_code == 200, resp.text
            page = resp.json()
            out += page["items"]
            cursor = page["next"]
            if cursor is None:
                return out


async def all_delivered(
    srv: Any, key: str, hook: dict[str, Any], total: int
) -> list[dict[str, Any]]:
    """The deliveries of `hook`, once the API shows `total` of them, all delivered."""
    deadline = time.monotonic() + 30
    while True:
        listed = await deliveries(srv, key, hook)
        if len(listed) >= total and all(d["status"] == "delivered" for d in listed):
            return listed
        assert time.monotonic() < deadline, [d["status"] for d in listed]
        await asyncio.sleep(0.1)


def check_signed(got: list[Received]) -> None:
    """Every delivery is signed with the secret, and its headers match its body."""
    for r in got:
        assert r.signed, f"bad signature on {r.headers}"
        body = r.body
        assert set(body) == {"id", "event", "created_at", "data"}, body
        assert r.headers["x-kefu-event"] == body["event"]
        assert r.headers["x-kefu-delivery"] == body["id"]
        assert r.headers["content-type"] == "application/json"
        assert abs(int(r.headers["x-kefu-timestamp"]) - time.time()) < 600
        assert r.headers["user-agent"].startswith("kefu-webhooks/")


def by_id(got: list[Received]) -> dict[str, Received]:
    """The deliveries received, once each (a retried delivery keeps its id and body)."""
    out: dict[str, Received] = {}
    for r in got:
        if r.id in out:
            assert out[r.id].raw == r.raw, "a delivery was sent again with another body"
        out.setdefault(r.id, r)
    return out


def by_subject(got: list[Received]) -> dict[str, list[Received]]:
    """The deliveries per subject (the conversation's user, or the account), as they came."""
    users = {r.data["conversation_id"]: r.data["user_id"] for r in got if "waiter_id" in r.data}
    per: dict[str, list[Received]] = defaultdict(list)
    for r in got:
        if r.event.startswith("account."):
            per[r.data["id"]].append(r)
        else:
            per[r.data.get("user_id") or users[r.data["conversation_id"]]].append(r)
    return per


def what(r: Received) -> tuple[str, str]:
    """What a delivery is about (one per event): a message id, or the event and its data."""
    if r.event == "message.created":
        return (r.event, r.data["id"])
    return (r.event, json.dumps(r.data, sort_keys=True))


# -- the API ------------------------------------------------------------------------------------
async def test_the_api_refuses_bad_input_and_callers_without_the_right(
    srv: Server, receiver: Receiver
) -> None:
    key = create_key(srv, "hooks")
    reader = create_key(srv, "reader", read_only=True)
    good = {"url": receiver.url, "events": ["message.created"]}
    async with api(srv, key) as http:
        bad_bodies: list[Any] = [
            {"url": "ftp://127.0.0.1/x", "events": ["*"]},
            {"url": "http://", "events": ["*"]},
            {"url": "not a url", "events": ["*"]},
            {"url": "http://user:pw@127.0.0.1/", "events": ["*"]},
            {"url": "http://127.0.0.1:99999/", "events": ["*"]},
            {"url": "http://127.0.0.1/" + "x" * 2100, "events": ["*"]},
            {"url": "http://no-such-host.invalid/", "events": ["*"]},
            {"url": receiver.url, "events": []},
            {"url": receiver.url, "events": ["message.sent"]},
            {"url": receiver.url, "events": ["*", "message.created"]},
            {"url": receiver.url, "events": "*"},
            {"url": receiver.url},
            {"events": ["*"]},
            {**good, "secret": "short"},
            {**good, "secret": "has spaces in it, not allowed"},
            {**good, "extra": 1},
            [good],
        ]
        for body in bad_bodies:
            error_of(await http.post("/webhooks", json=body), 422)
        error_of(
            await http.post(
                "/webhooks", content=b"{", headers={"Content-Type": "application/json"}
            ),
            422,
        )
        error_of(await http.get("/webhooks", params={"cursor": "!!"}), 422)
        error_of(await http.get("/webhooks", params={"limit": 0}), 422)
        for path in ("/webhooks/nope", "/webhooks/nope/deliveries"):
            error_of(await http.get(path), 404)
        error_of(await http.delete("/webhooks/nope"), 404)

        # a good one; its secret is shown once
        resp = await http.post("/webhooks", json={**good, "secret": "s" * 20})
        assert resp.status_code == 201, resp.text
        made = resp.json()
        assert made["secret"] == "s" * 20 and made["events"] == ["message.created"]
        generated = (
            await http.post("/webhooks", json={"url": receiver.url, "events": ["*"]})
        ).json()
        assert generated["secret"].startswith("whsec_") and len(generated["secret"]) > 40
        listed = (await http.get("/webhooks", params={"limit": 1})).json()
        assert [h["id"] for h in listed["items"]] == [generated["id"]]  # newest first
        rest = (await http.get("/webhooks", params={"cursor": listed["next"]})).json()
        assert [h["id"] for h in rest["items"]] == [made["id"]] and rest["next"] is None
        for item in [*listed["items"], *rest["items"]]:
            assert set(item) == {"id", "url", "events", "created_at"}  # no secret
        shown = (await http.get(f"/webhooks/{made['id']}")).json()
        assert shown == {k: v for k, v in made.items() if k != "secret"}
        error_of(
            await http.get(f"/webhooks/{made['id']}/deliveries", params={"status": "lost"}), 422
        )
        # a well-formed cursor that names no delivery id
        not_an_id = base64.urlsafe_b64encode(b'["abc"]').decode().rstrip("=")
        deliveries = f"/webhooks/{made['id']}/deliveries"
        error_of(await http.get(deliveries, params={"cursor": not_an_id}), 422)
        # at most 50 webhooks: the 51st is refused until one is deleted
        more = [(await http.post("/webhooks", json=good)).json()["id"] for _ in range(48)]
        error_of(await http.post("/webhooks", json=good), 409)
        assert (await http.delete(f"/webhooks/{more.pop()}")).status_code == 204
        resp = await http.post("/webhooks", json=good)
        assert resp.status_code == 201, resp.text
        for hook_id in [*more, resp.json()["id"]]:
            assert (await http.delete(f"/webhooks/{hook_id}")).status_code == 204

    # no credentials: 401 everywhere; a read-only key reads but does not write
    async with api(srv) as http:
        error_of(await http.get("/webhooks"), 401)
        error_of(await http.post("/webhooks", json=good), 401)
        error_of(await http.delete(f"/webhooks/{made['id']}"), 401)
        error_of(await http.get(f"/webhooks/{made['id']}/deliveries"), 401)
    async with api(srv, reader) as http:
        assert (await http.get("/webhooks")).status_code == 200
        assert (await http.get(f"/webhooks/{made['id']}/deliveries")).status_code == 200
        error_of(await http.post("/webhooks", json=good), 403)
        error_of(await http.delete(f"/webhooks/{made['id']}"), 403)
    async with api(srv, admin_token()) as http:  # an admin's token may
        resp = await http.delete(f"/webhooks/{made['id']}")
        assert resp.status_code == 204, resp.text
        error_of(await http.get(f"/webhooks/{made['id']}"), 404)


async def test_private_addresses_are_refused_without_the_setting(
    make_server: MakeServer, receiver: Receiver
) -> None:
    srv = make_server()  # KEFU_WEBHOOK_ALLOW_PRIVATE is false by default
    key = create_key(srv)
    private = [
        receiver.url,
        "http://localhost:8080/",
        "http://10.1.2.3/",
        "http://192.168.0.1/",
        "http://172.16.5.4/",
        "http://169.254.169.254/latest/meta-data",
        "http://100.64.0.1/",
        "http://0.0.0.0/",
        "http://[::1]/",
        "http://[fe80::1]/",
        "http://[fd00::1]/",
        "http://[::ffff:127.0.0.1]/",
        "https://224.0.0.1/",
    ]
    async with api(srv, key) as http:
        for url in private:
            message = error_of(
                await http.post("/webhooks", json={"url": url, "events": ["*"]}), 422
            )
            assert "public" in message, message
        assert (await http.get("/webhooks")).json()["items"] == []


async def test_a_private_address_is_refused_at_delivery_too(
    make_server: MakeServer, receiver: Receiver
) -> None:
    # made while private addresses were allowed; then the setting went away (as DNS may
    # change between the creation and a delivery): nothing may be sent
    srv = make_server(**HOOKED)
    key = create_key(srv)
    hook = await subscribe(srv, key, receiver, ["account.created"])
    srv.env.pop("KEFU_WEBHOOK_ALLOW_PRIVATE")
    srv.restart()
    async with api(srv, key) as http:
        assert (await http.post("/accounts", json={"username": "refused-1"})).status_code == 201
    deadline = time.monotonic() + 30
    while True:
        found = await deliveries(srv, key, hook)
        if found and found[0]["attempts"] >= 1:
            break
        assert time.monotonic() < deadline, found
        await asyncio.sleep(0.1)
    (delivery,) = found
    assert delivery["status"] == "pending" and "public" in delivery["last_error"]
    assert delivery["last_status"] is None
    assert receiver.received == []


# -- events ------------------------------------------------------------------------------------
async def test_every_event_arrives_signed_and_in_order(srv: Server, receiver: Receiver) -> None:
    key = create_key(srv)
    hook = await subscribe(srv, key, receiver)
    w1 = await srv.waiter()
    user = await srv.user()
    await pair(user, w1)
    w2 = await srv.waiter()
    assert w2.person is not None
    await say(user, w1, "webhook hello one")
    await say(w1, user, "webhook hello two")
    await w1.send({"type": "transfer", "payload": {"uuid": user.uuid, "waiter_id": w2.person.id}})
    await w1.expect("disconnected", from_=user.uuid)
    await user.expect("connect_success", from_=w2.uuid)
    await w2.expect("new_connection", from_=user.uuid)
    await say(user, w2, "webhook hello three")
    await user.send({"type": "rate", "payload": {"rate": 4}})
    await user.expect("rate_success")
    await w2.expect("rate_user_success")
    await w2.expect("disconnected", from_=user.uuid)
    # a late rating: the conversation ended first
    late = await srv.user()
    await late.send({"type": "connect"})
    served_by = w1 if (await late.expect("connect_success"))["from"] == w1.uuid else w2
    await served_by.expect("new_connection", from_=late.uuid)
    await served_by.send({"type": "disconnect", "payload": {"uuid": late.uuid}})
    await late.expect("disconnected", from_=served_by.uuid)
    await late.send({"type": "rate", "op_id": new_op_id(), "payload": {"rate": 2}})
    await late.expect("rate_success")
    # account changes through the API
    async with api(srv, key) as http:
        made = (await http.post("/accounts", json={"username": "hooked-account"})).json()
        resp = await http.patch(f"/accounts/{made['id']}", json={"nickname": "Hooked"})
        assert resp.status_code == 200, resp.text
        assert (await http.delete(f"/accounts/{made['id']}")).status_code == 200

    assert user.person is not None and late.person is not None and w1.person is not None
    want_user = [
        "conversation.queued",
        "conversation.assigned",
        "message.created",
        "message.created",
        "conversation.closed",
        "conversation.transferred",
        "conversation.assigned",
        "message.created",
        "conversation.closed",
        "conversation.rated",
    ]
    want_late = [
        "conversation.queued",
        "conversation.assigned",
        "conversation.closed",
        "conversation.rated",
    ]
    want_account = ["account.created", "account.updated", "account.erased"]
    total = len(want_user) + len(want_late) + len(want_account)
    await receiver.wait_for(f"{total} deliveries", lambda got: len(by_id(got)) >= total)
    await asyncio.sleep(0.5)  # nothing more comes
    got = list(by_id(receiver.received).values())
    check_signed(got)
    assert len(got) == total, [(r.event, r.data) for r in got]
    per = by_subject(got)
    assert [r.event for r in per[user.person.id]] == want_user
    assert [r.event for r in per[late.person.id]] == want_late
    assert [r.event for r in per[made["id"]]] == want_account

    events = per[user.person.id]
    texts = [r.data["payload"]["text"] for r in events if r.event == "message.created"]
    assert texts == ["webhook hello one", "webhook hello two", "webhook hello three"]
    first, second = events[1].data, events[6].data
    assert first["user_id"] == user.person.id and first["waiter_id"] == w1.person.id
    assert events[4].data["reason"] == "transferred"
    assert events[5].data == {
        "conversation_id": second["conversation_id"],
        "user_id": user.person.id,
        "waiter_id": w2.person.id,
        "opened_at": second["opened_at"],
        "from_conversation_id": first["conversation_id"],
        "from_waiter_id": w1.person.id,
    }
    assert events[8].data["reason"] == "rated" and events[8].data["rate"] == 4
    assert per[late.person.id][2].data["reason"] == "waiter_ended"
    assert per[late.person.id][3].data["rate"] == 2
    erased = per[made["id"]][2].data
    assert erased["erased"] is True and erased["username"].startswith("erased-")
    assert per[made["id"]][1].data["nickname"] == "Hooked"

    listed = await all_delivered(srv, key, hook, total)
    assert len(listed) == total
    assert {d["id"] for d in listed} == {r.id for r in got}
    assert all(d["attempts"] == 1 and d["last_status"] == 200 for d in listed)


async def test_a_receiver_down_for_a_while_gets_everything_once_in_order(
    srv: Server, receiver: Receiver
) -> None:
    key = create_key(srv)
    hook = await subscribe(srv, key, receiver, ["message.created", "conversation.closed"])
    await receiver.down()
    waiter = await srv.waiter()
    users = [await srv.user() for _ in range(3)]
    sent: dict[str | None, list[str]] = {}
    for user in users:
        await pair(user, waiter)
    for i in range(8):
        for user in users:
            ack = await say(user, waiter, f"while down {i}")
            sent.setdefault(user.uuid, []).append(ack["id"])
    for user in users:
        await waiter.send({"type": "disconnect", "payload": {"uuid": user.uuid}})
        await user.expect("disconnected", from_=waiter.uuid)
    # attempts fail meanwhile
    deadline = time.monotonic() + 30
    while not any(d["attempts"] >= 2 for d in await deliveries(srv, key, hook)):
        assert time.monotonic() < deadline, "no attempt was retried"
        await asyncio.sleep(0.2)
    await receiver.up()

    total = 3 * 8 + 3
    await receiver.wait_for(f"{total} deliveries", lambda got: len(by_id(got)) >= total, 60)
    got = list(by_id(receiver.received).values())
    check_signed(got)
    assert len(got) == total
    assert len({what(r) for r in got}) == total  # no event twice under two ids
    per = by_subject(got)  # in the order they first came
    for user in users:
        assert user.person is not None
        events = per[user.person.id]
        assert [r.event for r in events] == ["message.created"] * 8 + ["conversation.closed"]
        assert [r.data["id"] for r in events[:8]] == sent[user.uuid]  # in order, across retries
    listed = await all_delivered(srv, key, hook, total)
    assert any(d["attempts"] > 1 and d["last_error"] is None for d in listed)


async def test_500_then_200_is_retried_with_backoff(
    make_server: MakeServer, receiver: Receiver
) -> None:
    base = 1.0
    srv = make_server(webhook_allow_private="true", webhook_retry_base=base)
    key = create_key(srv)
    hook = await subscribe(srv, key, receiver, ["account.created"])
    receiver.answers = [500, 503]
    async with api(srv, key) as http:
        assert (await http.post("/accounts", json={"username": "retried"})).status_code == 201
    await receiver.wait_for("three attempts", lambda got: len(got) == 3, 60)
    first, second, third = receiver.received
    assert first.id == second.id == third.id and first.raw == second.raw == third.raw
    check_signed(receiver.received)
    # waits of about base, then 2 x base (each varied by at most 25%)
    assert second.at - first.at >= 0.75 * base
    assert third.at - second.at >= 1.5 * base
    deadline = time.monotonic() + 10
    while True:
        (delivery,) = await deliveries(srv, key, hook)
        if delivery["status"] == "delivered":
            break
        assert time.monotonic() < deadline, delivery
        await asyncio.sleep(0.1)
    assert delivery["attempts"] == 3 and delivery["last_status"] == 200
    async with httpx.AsyncClient(trust_env=False) as http:
        metrics = (await http.get(f"{srv.url}/metrics")).text
    assert 'kefu_webhook_deliveries_total{result="delivered"} 1.0' in metrics
    assert 'kefu_webhook_deliveries_total{result="failed"} 2.0' in metrics


async def test_a_sigkill_between_the_change_and_the_delivery_loses_nothing(
    backend: str,  # noqa: F811
    make_server: MakeServer,
    receiver: Receiver,
) -> None:
    srv = make_server(**backend_settings(backend), **HOOKED)
    key = create_key(srv)
    hook = await subscribe(srv, key, receiver, ["message.created"])
    await receiver.down()
    waiter = await srv.waiter()
    user = await srv.user()
    await pair(user, waiter)
    acked = [(await say(user, waiter, f"before the crash {i}"))["id"] for i in range(10)]
    # and some sent as the server dies: acked or not, only what was stored may arrive
    for i in range(20):
        frame = {"type": "message_text", "op_id": new_op_id(), "payload": {"text": f"racing {i}"}}
        await user.send(frame)
    srv.kill()
    await receiver.up()
    srv.start()
    stored = await stored_messages(srv, backend, user)
    assert set(acked) <= set(stored)
    await receiver.wait_for(
        f"{len(stored)} messages", lambda got: len(by_id(got)) >= len(stored), 60
    )
    await asyncio.sleep(0.5)
    got = list(by_id(receiver.received).values())
    check_signed(got)
    assert [r.data["id"] for r in got] == stored  # each stored one, once, in order
    assert len(await all_delivered(srv, key, hook, len(stored))) == len(stored)


async def stored_messages(srv: Server, database: str, user: Client) -> list[str]:
    """The ids of the messages `user` sent that the database holds, in order."""
    assert user.person is not None
    sql = "SELECT id FROM messages WHERE sender_id = {} ORDER BY id"
    if database == "sqlite":
        with sqlite3.connect(srv.db_path) as con:
            rows = con.execute(sql.format("?"), (user.person.id,)).fetchall()
        return [r[0] for r in rows]
    person_id = user.person.id

    async def run() -> list[str]:
        import asyncpg

        conn = await asyncpg.connect(database, timeout=5)
        try:
            return [r[0] for r in await conn.fetch(sql.format("$1"), person_id)]
        finally:
            await conn.close()

    return in_thread(run)
