"""Redis or PostgreSQL restarting under a running cluster (through TCP proxies)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from support.client import Client, new_op_id, pair, say
from support.services import wipe_redis

from .conftest import MakeCluster


async def collect(client: Client, type_: str, ids: set[str], timeout: float) -> None:
    """Read frames until every id in `ids` has arrived as a `type_` frame."""
    deadline = time.monotonic() + timeout
    while ids:
        left = deadline - time.monotonic()
        assert left > 0, f"[{client.label}] {len(ids)} messages never arrived"
        frame = await client.recv(left)
        if frame["type"] == type_:
            ids.discard(frame["id"])


async def send_acked(
    client: Client, text: str, op_id: str, to: str | None = None
) -> dict[str, Any]:
    frame: dict[str, Any] = {"type": "message_text", "op_id": op_id, "payload": {"text": text}}
    if to is not None:
        frame["to"] = to
    await client.send(frame)
    return await client.recv(10)


async def test_redis_restart_during_traffic(make_cluster: MakeCluster) -> None:
    cluster = await make_cluster(3, proxied=True, max_users_per_waiter=1)
    proxy = cluster.redis_proxy
    assert proxy is not None
    user = await cluster[0].user()
    waiter = await cluster[1].waiter()
    await pair(user, waiter)
    queued = await cluster[2].user()
    await queued.send({"type": "connect"})
    await queued.expect("connect_queue", payload={"location": 0})
    before = await say(user, waiter, "before")

    proxy.down()  # Redis goes away and comes back empty (no persistence)
    wipe_redis(cluster.prefix)
    acked: set[str] = set()
    started = time.monotonic()
    i = 0
    while time.monotonic() - started < 3.0:  # longer than the lease TTL: the leader steps down
        reply = await send_acked(user, f"during {i}", new_op_id())
        assert reply["type"] == "message_text_success", reply  # stored: PostgreSQL is fine
        acked.add(reply["id"])
        i += 1
        await asyncio.sleep(0.05)
    proxy.up()
    wipe_redis(cluster.prefix)

    # the nodes find Redis again by themselves, elect a leader, rebuild the desk
    names = {n.name for n in cluster.nodes}
    await cluster.wait_for(
        lambda s: s.get("leader") in names and set(s["nodes"]) == names and s["pending_num"] == 1,
        timeout=15,
        what="a rebuilt cluster",
    )
    # what was stored meanwhile reaches the waiter (held by the sender's node, then delivered)
    await collect(waiter, "message_text", set(acked), timeout=10)
    await say(user, waiter, "after")
    await say(waiter, user, "after too")
    # a resume (here on another node) replays from SQL too
    again = await cluster[2].open("waiter", "waiter-again")
    await again.auth(waiter.person, last_id=before["id"])
    await collect(again, "message_text", set(acked), timeout=10)
    await waiter.expect("kickout", skip=("message_text",))
    # and the desk works: the queued user keeps its place and is served next
    await again.send({"type": "disconnect", "payload": {"uuid": user.uuid}})
    await queued.expect("connect_success", from_=again.uuid)
    rows = cluster.sql("SELECT count(*) FROM messages WHERE id = ANY($1)", list(acked))
    assert rows[0][0] == len(acked)


async def test_postgres_restart_during_traffic(make_cluster: MakeCluster) -> None:
    cluster = await make_cluster(3, proxied=True)
    proxy = cluster.pg_proxy
    assert proxy is not None
    user = await cluster[0].user()
    waiter = await cluster[2].waiter()
    await pair(user, waiter)
    acked = [(await say(user, waiter, f"before {i}"))["id"] for i in range(5)]

    proxy.down()
    refused: list[tuple[str, str]] = []
    for i in range(5):
        op_id = new_op_id()
        reply = await send_acked(user, f"during {i}", op_id)
        assert reply["type"] == "error" and reply["op_id"] == op_id, reply  # no ack
        refused.append((f"during {i}", op_id))
    reply = await send_acked(waiter, "waiter during", new_op_id(), to=user.uuid)
    assert reply["type"] == "error", reply
    assert all(n.alive() for n in cluster.nodes)
    status = await cluster[1].status()  # the nodes keep answering
    assert status["matchers"] == {waiter.uuid: [user.uuid]}
    await asyncio.sleep(1.0)
    proxy.up()

    # the client resends with the same op_ids: stored once, acked, delivered
    deadline = time.monotonic() + 15
    for text, op_id in refused:
        while True:
            reply = await send_acked(user, text, op_id)
            if reply["type"] == "message_text_success":
                break
            assert time.monotonic() < deadline, f"PostgreSQL never came back: {reply}"
            await asyncio.sleep(0.2)
        acked.append(reply["id"])
        got = await waiter.expect("message_text")
        assert got["id"] == reply["id"]
    assert all(n.alive() for n in cluster.nodes)
    rows = cluster.sql("SELECT id, count(*) FROM messages GROUP BY id")
    assert sorted(r[0] for r in rows) == sorted(acked)  # nothing acked lost, nothing twice
    assert all(r[1] == 1 for r in rows)
