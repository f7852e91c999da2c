"""The admin API's `/live` on a node that does not lead, and retention run by the leader.

The desk runs on the leader; it publishes the queue and the waiters with its
status snapshot, and any node answers `/live` from it. The public
`/v1/ws/status` does not show them. With `KEFU_RETENTION_DAYS`, the leader
purges old closed conversations while the other node serves the chat.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import pytest

from support.api import admin_token, api

from .conftest import MakeCluster

pytestmark = pytest.mark.timeout(120)


async def live_of(http: httpx.AsyncClient) -> dict[str, Any]:
    resp = await http.get("/live")
    assert resp.status_code == 200, resp.text
    body: dict[str, Any] = resp.json()
    return body


async def test_live_on_any_node_and_retention_on_the_leader(make_cluster: MakeCluster) -> None:
    cluster = await make_cluster(2, retention_days=5, retention_interval=0.3)
    leader = await cluster.leader()
    other = next(n for n in cluster.nodes if n is not leader)
    waiter = await leader.waiter()
    first, second = await other.user(), await other.user()
    await first.send({"type": "connect"})
    await first.expect("connect_success", from_=waiter.uuid)
    await waiter.expect("new_connection")
    await waiter.send({"type": "unready"})
    await waiter.expect("unready")
    await second.send({"type": "connect"})
    await second.expect("connect_queue", payload={"location": 0})

    assert second.person is not None and waiter.person is not None
    async with api(other, admin_token()) as http:
        deadline = time.monotonic() + 10
        while True:
            live = await live_of(http)
            if live["queued"] == 1 and live["waiters"] and not live["waiters"][0]["ready"]:
                break
            assert time.monotonic() < deadline, live
            await asyncio.sleep(0.1)
        (queued,) = live["queue"]
        assert (queued["position"], queued["user"]["id"], queued["online"]) == (
            0,
            second.person.id,
            True,
        )
        (row,) = live["waiters"]
        assert row["waiter"]["id"] == waiter.person.id
        assert (row["ready"], row["online"], row["load"], row["capacity"]) == (False, True, 1, 5)
        # the public status has the figures, not the people
        status = await cluster.wait_for(
            lambda s: s["pending_num"] == 1, timeout=30, nodes=[other], what="other's status"
        )
        assert "live" not in status

        # the first conversation ends; aged 10 days, the leader's retention deletes it
        await first.send({"type": "disconnect"})
        await first.expect("disconnected")
        deadline = time.monotonic() + 10
        while not cluster.sql("SELECT id FROM conversations WHERE closed_at IS NOT NULL"):
            assert time.monotonic() < deadline
            await asyncio.sleep(0.1)
        old = int((time.time() - 10 * 86_400) * 1e6)
        cluster.sql("UPDATE conversations SET closed_at = $1 WHERE closed_at IS NOT NULL", old)
        deadline = time.monotonic() + 20
        while cluster.sql("SELECT id FROM conversations WHERE closed_at IS NOT NULL"):
            assert time.monotonic() < deadline, "retention did not purge"
            await asyncio.sleep(0.1)
        # the chat goes on: the waiter gets ready and takes the queued user
        await waiter.send({"type": "ready"})
        await second.expect("connect_success", from_=waiter.uuid)
        assert len(cluster.sql("SELECT id FROM conversations")) == 1
