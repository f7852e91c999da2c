"""Webhooks in a cluster: one worker (the leader), and a new leader carries on.

The events of every node's writer (messages from sockets on two nodes, the
leader's lifecycle records, an account made through a third node's API) are
delivered by the leader alone; killing it while deliveries are pending (the
receiver is down) loses none: the next leader delivers each once, in order
per conversation.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from typing import Any

import pytest

from support.api import api, create_key
from support.client import pair, say
from support.receiver import Receiver

from .conftest import MakeCluster, Node

pytestmark = pytest.mark.timeout(180)


async def _deliveries(node: Node, key: str, hook_id: str) -> list[dict[str, Any]]:
    async with api(node, key) as http:
        resp = await http.get(f"/webhooks/{hook_id}/deliveries", params={"limit": 200})
    assert resp.status_code == 200, resp.text
    items: list[dict[str, Any]] = resp.json()["items"]
    return items


async def test_a_new_leader_delivers_what_the_dead_one_had_pending(
    make_cluster: MakeCluster,
) -> None:
    receiver = await Receiver().start()
    try:
        cluster = await make_cluster(3, webhook_allow_private="true", webhook_retry_base=0.3)
        leader = await cluster.leader()
        a, b = (n for n in cluster.nodes if n is not leader)
        key = create_key(a)
        async with api(a, key) as http:
            body = {"url": receiver.url, "events": ["*"]}
            resp = await http.post("/webhooks", json=body)
            assert resp.status_code == 201, resp.text
            hook = resp.json()
        receiver.use(hook["secret"])
        for node in cluster.nodes:  # listing makes a node read the subscriptions at once
            async with api(node, key) as http:
                assert (await http.get("/webhooks")).status_code == 200
        await receiver.down()

        waiter = await b.waiter()
        users = [await a.user(), await b.user()]
        sent: dict[str, list[str]] = defaultdict(list)
        for user in users:
            await pair(user, waiter)
        for i in range(5):
            for user in users:
                sent[user.uuid or ""].append((await say(user, waiter, f"cluster {i}"))["id"])
                sent[user.uuid or ""].append((await say(waiter, user, f"answer {i}"))["id"])
        async with api(b, key) as http:
            made = await http.post("/accounts", json={"username": "clustered-hook"})
            assert made.status_code == 201, made.text
        total = 2 * (2 + 10) + 1  # per user: queued, assigned, 10 messages; the account

        # the leader has tried (and failed) before it dies
        deadline = time.monotonic() + 30
        while True:
            found = await _deliveries(a, key, hook["id"])
            if len(found) == total and any(d["attempts"] >= 1 for d in found):
                break
            assert time.monotonic() < deadline, found
            await asyncio.sleep(0.2)
        assert receiver.received == []
        leader.kill()
        status = await cluster.wait_for(
            lambda s: s.get("leader") in (a.name, b.name), timeout=20, what="a new leader"
        )
        assert status["leader"] != leader.name
        await receiver.up()

        await receiver.wait_for(
            f"{total} deliveries", lambda got: len({r.id for r in got}) >= total, 60
        )
        await asyncio.sleep(1)
        first: dict[str, Any] = {}
        for r in receiver.received:
            assert r.signed
            first.setdefault(r.id, r)
        got = list(first.values())
        assert len(got) == total
        messages = [r for r in got if r.event == "message.created"]
        assert len({r.data["id"] for r in messages}) == len(messages) == 20  # once each
        for user in users:
            assert user.person is not None
            convs = {
                r.data["conversation_id"]
                for r in got
                if r.event == "conversation.assigned" and r.data["user_id"] == user.person.id
            }
            mine = [r for r in messages if r.data["conversation_id"] in convs]
            assert [r.data["id"] for r in mine] == sent[user.uuid or ""]
        assert [r.event for r in got if r.event.startswith("account.")] == ["account.created"]
        deadline = time.monotonic() + 30
        while {d["status"] for d in await _deliveries(b, key, hook["id"])} != {"delivered"}:
            assert time.monotonic() < deadline, "the deliveries were not all marked delivered"
            await asyncio.sleep(0.2)
        assert len(await _deliveries(b, key, hook["id"])) == total
    finally:
        await receiver.close()
