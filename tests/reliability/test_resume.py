"""Resume (protocol section 10) and idempotency (section 8), attacked from the edges.

* a waiter's refresh keeps its users, even with another ready waiter free;
* `last_id` replays, in order and with the original ids, what each side missed;
* a server restart keeps queue places and conversations for who comes back;
* the same op_id: same body -> same ack and id, stored once; other body -> 100006.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from support.client import new_op_id, pair, person, say

from .wire import db_rows

pytestmark = pytest.mark.timeout(60)


async def test_waiter_refresh_keeps_its_users_from_other_waiters(kefu_server: Any) -> None:
    srv = kefu_server(resume_grace=10, max_users_per_waiter=3)
    wp = person("waiter")
    w1 = await srv.waiter(wp, label="w1")
    users = []
    for i in range(3):
        u = await srv.user(label=f"u{i}")
        await pair(u, w1)
        users.append(u)
    w2 = await srv.waiter(label="w2")  # ready, empty: the obvious place for orphans
    w1.abort()  # the page is refreshed: no closing handshake
    await asyncio.sleep(0.5)
    # nobody was moved while w1 was away
    await w2.expect_nothing(0.3)
    for u in users:
        await u.expect_nothing(0.05)
    back = await srv.open("waiter", "w1-again")
    await back.auth(wp)
    seen = {}
    for _ in users:
        frame = await back.expect("new_connection", skip=("ready",))
        assert frame["payload"]["resumed"] is True
        assert frame["payload"]["previous_uuid"] == w1.uuid
        seen[frame["from"]] = frame
    assert set(seen) == {u.uuid for u in users}
    await back.expect("ready")  # it was ready, and still is
    for u in users:
        ok = await u.expect("connect_success", from_=back.uuid)
        assert ok["payload"]["uuid"] == back.uuid
        await say(u, back, f"after the refresh {u.label}")
        await say(back, u, f"welcome back {u.label}")
    await w2.expect_nothing(0.2)
    status = (await srv.status())["data"]
    assert sorted(status["matchers"][back.uuid]) == sorted(u.uuid for u in users)
    assert status["matchers"][w2.uuid] == []


async def test_last_id_replays_both_ways_in_order_with_original_ids(kefu_server: Any) -> None:
    srv = kefu_server(resume_grace=10)
    wp, up = person("waiter"), person("user")
    w = await srv.waiter(wp)
    u = await srv.user(up)
    await pair(u, w)
    first = await say(u, w, "before the drop")
    u.abort()
    await asyncio.sleep(0.3)
    # the waiter keeps writing to the user's (dropped) socket: stored, not delivered
    missed = [await w.send_text(f"while you were away {i}", to=u.uuid) for i in range(30)]
    w.abort()
    await asyncio.sleep(0.2)
    # the user comes back first and writes while the waiter is away
    u2 = await srv.open("user", "u-again")
    await u2.auth(up, last_id=first["id"])
    ok = await u2.expect("connect_success")
    assert ok["payload"]["id"] == wp.id
    replay = [await u2.expect("message_text") for _ in missed]
    assert [f["id"] for f in replay] == [m["id"] for m in missed]
    assert [f["payload"]["text"] for f in replay] == [f"while you were away {i}" for i in range(30)]
    assert all(f["from"] in (w.uuid, None) for f in replay)
    await u2.expect_nothing(0.3)  # nothing twice, nothing of its own
    mine = [await u2.send_text(f"are you there {i}") for i in range(5)]
    # the waiter comes back with the last id it saw
    w2 = await srv.open("waiter", "w-again")
    await w2.auth(wp, last_id=first["id"])
    await u2.expect("connect_success", from_=w2.uuid)  # the user hears of the new socket
    frames = []
    while len([f for f in frames if f["type"] == "message_text"]) < len(mine):
        frames.append(await w2.recv())
    texts = [f for f in frames if f["type"] == "message_text"]
    assert [f["id"] for f in texts] == [m["id"] for m in mine]
    await say(u2, w2, "all good")


async def test_restart_keeps_queue_places_and_conversations(kefu_server: Any) -> None:
    srv = kefu_server(resume_grace=30, max_users_per_waiter=1)
    wp = person("waiter")
    ups = [person("user") for _ in range(4)]
    w = await srv.waiter(wp)
    served = await srv.user(ups[0], label="served")
    await pair(served, w)
    queued = []
    for i, p in enumerate(ups[1:]):
        q = await srv.user(p, label=f"q{i}")
        await q.send({"type": "connect"})
        await q.expect("connect_queue", payload={"location": i})
        queued.append(q)
    before = await say(served, w, "before the restart")
    # a message the user sent but whose ack may be lost in the restart
    op = new_op_id()
    await served.send({"type": "message_text", "op_id": op, "payload": {"text": "in flight"}})

    await asyncio.to_thread(srv.restart)  # SIGTERM, then start on the same database

    # the queue comes back in reverse order of arrival: places are kept regardless
    for i in reversed(range(len(queued))):
        q = await srv.open("user", f"q{i}-after")
        await q.auth(ups[i + 1])
        await q.expect("connect_queue", payload={"location": i})
    s2 = await srv.open("user", "served-after")
    await s2.auth(ups[0], last_id=before["id"])
    await s2.expect("connect_success")
    again = await s2.send_text("in flight", op_id=op)  # the resend: stored once
    w2 = await srv.open("waiter", "waiter-after")
    await w2.auth(wp)
    new = await w2.expect("new_connection", from_=s2.uuid)
    assert new["payload"]["resumed"] is True
    rows = db_rows(srv.db_path, "SELECT id FROM messages WHERE op_id = ?", op)
    assert [r[0] for r in rows] == [again["id"]]
    convs = db_rows(srv.db_path, "SELECT id, closed_at FROM conversations")
    assert len(convs) == 1 and convs[0][1] is None, convs


async def test_waiter_back_first_after_restart_gets_no_empty_socket_ids(kefu_server: Any) -> None:
    srv = kefu_server(resume_grace=30)
    wp, up = person("waiter"), person("user")
    w = await srv.waiter(wp)
    u = await srv.user(up)
    await pair(u, w)
    await asyncio.to_thread(srv.restart)
    w2 = await srv.open("waiter", "waiter-after")
    await w2.auth(wp)  # Client.recv checks `from` is a UUID on every frame
    await w2.expect_nothing(0.5)
    u2 = await srv.open("user", "user-after")
    await u2.auth(up)
    await w2.expect("new_connection", from_=u2.uuid)


async def test_same_op_id_same_body_is_one_row_and_one_id(kefu_server: Any) -> None:
    srv = kefu_server(resume_grace=0)
    w, u = await srv.waiter(), await srv.user()
    await pair(u, w)
    op = new_op_id()
    frame = {"type": "message_text", "op_id": op, "payload": {"text": "exactly once"}}
    for _ in range(20):  # back to back, most in the same group commit
        await u.ws.send(json.dumps(frame))
    acks = [await u.expect("message_text_success", op_id=op) for _ in range(20)]
    assert len({a["id"] for a in acks}) == 1
    rows = db_rows(srv.db_path, "SELECT id FROM messages WHERE op_id = ?", op)
    assert [r[0] for r in rows] == [acks[0]["id"]]
    # the waiter may see the retries (clients dedupe by id), never another id
    got = [await w.expect("message_text") for _ in range(20)]
    assert {g["id"] for g in got} == {acks[0]["id"]}


async def test_same_op_id_other_body_is_100006_and_nothing_stored(kefu_server: Any) -> None:
    srv = kefu_server(resume_grace=0)
    w, u = await srv.waiter(), await srv.user()
    await pair(u, w)
    op = new_op_id()
    first = await u.send_text("the original", op_id=op)
    await w.expect("message_text", id=first["id"])
    variants: list[dict[str, Any]] = [
        {"type": "message_text", "op_id": op, "payload": {"text": "changed"}},
        {"type": "message_image", "op_id": op, "payload": {"image": "https://example.com/a.png"}},
    ]
    for v in variants:
        await u.send(v)
        await u.expect_error(100006, op_id=op)
    await w.expect_nothing(0.3)
    rows = db_rows(srv.db_path, "SELECT id, payload FROM messages WHERE op_id = ?", op)
    assert rows == [(first["id"], json.dumps({"text": "the original"}, separators=(",", ":")))]
    # the op_id is the sender's: the waiter may use the same one
    ack = await w.send_text("mine", to=u.uuid, op_id=op)
    assert ack["id"] != first["id"]
