"""Losing a node: the leader (another node leads), or a node holding a waiter."""

from __future__ import annotations

import asyncio
import time

from support.client import Client, pair, say

from .conftest import Cluster, MakeCluster, Node


class Traffic:
    """Keeps a user and a waiter talking, both ways, until stopped; records every ack."""

    def __init__(self, user: Client, waiter: Client) -> None:
        self.user, self.waiter = user, waiter
        self.acked: list[str] = []
        self._stop = asyncio.Event()
        self._task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        i = 0
        while not self._stop.is_set():
            ack = await say(self.user, self.waiter, f"u{i}")
            self.acked.append(ack["id"])
            ack = await say(self.waiter, self.user, f"w{i}")
            self.acked.append(ack["id"])
            i += 1
            await asyncio.sleep(0.01)

    async def stop(self) -> list[str]:
        self._stop.set()
        await asyncio.wait_for(self._task, 10)  # re-raises what went wrong
        return self.acked


def others(cluster: Cluster, leader: Node) -> list[Node]:
    return [n for n in cluster.nodes if n is not leader]


def stored_once(cluster: Cluster, ids: list[str]) -> None:
    rows = cluster.sql("SELECT id, count(*) FROM messages WHERE id = ANY($1) GROUP BY id", ids)
    assert len(rows) == len(set(ids)) and all(r[1] == 1 for r in rows)


async def test_leader_killed_during_traffic(make_cluster: MakeCluster) -> None:
    cluster = await make_cluster(3, max_users_per_waiter=2)
    leader = await cluster.leader()
    a, b = others(cluster, leader)
    w1 = await a.waiter()
    u1 = await b.user()
    u2 = await a.user()
    await pair(u1, w1)
    await pair(u2, w1)
    queued = [await node.user() for node in (b, a, b)]
    for place, q in enumerate(queued):
        await q.send({"type": "connect"})
        await q.expect("connect_queue", payload={"location": place})

    traffic = Traffic(u1, w1)
    await asyncio.sleep(0.3)
    killed_at = time.monotonic()
    leader.kill()
    status = await cluster.wait_for(
        lambda s: s.get("leader") in (a.name, b.name), timeout=10, what="a new leader"
    )
    failover = time.monotonic() - killed_at
    print(f"\nfailover: new leader {status['leader']} reported {failover:.2f}s after SIGKILL")
    assert failover < 10
    await asyncio.sleep(0.5)
    acked = await traffic.stop()
    assert len(acked) > 10

    # open conversations continue, both ways, and nobody heard of the failover
    await say(u2, w1, "still here")
    await say(w1, u2, "me too")
    await asyncio.gather(*(q.expect_nothing(0.2) for q in queued))
    status = await cluster.wait_for(
        lambda s: s["pending_num"] == 3 and s["online_user_num"] == 5, what="rebuilt desk"
    )
    assert status["matchers"] == {w1.uuid: [u1.uuid, u2.uuid]}

    # queued users keep their order
    await w1.send({"type": "disconnect", "payload": {"uuid": u1.uuid}})
    await u1.expect("disconnected", from_=w1.uuid)
    await queued[0].expect("connect_success", from_=w1.uuid)
    await queued[1].expect("connect_queue", payload={"location": 0})
    await queued[2].expect("connect_queue", payload={"location": 1})
    # new users are still assigned
    w2 = await b.waiter()
    await queued[1].expect("connect_success", from_=w2.uuid)
    await queued[2].expect("connect_success", from_=w2.uuid)
    late = await a.user()
    await late.send({"type": "connect"})
    await late.expect("connect_queue", payload={"location": 0})
    await w1.send({"type": "disconnect", "payload": {"uuid": u2.uuid}})
    await late.expect("connect_success", from_=w1.uuid)
    stored_once(cluster, acked)


async def test_node_with_a_waiter_killed(make_cluster: MakeCluster) -> None:
    cluster = await make_cluster(3, max_users_per_waiter=2, resume_grace=1)
    leader = await cluster.leader()
    doomed, safe = others(cluster, leader)  # the leader survives: only the waiter's node dies
    w1 = await doomed.waiter()
    u1 = await safe.user()
    u2 = await leader.user()
    await pair(u1, w1)
    await pair(u2, w1)
    w2 = await safe.waiter()
    u3 = await leader.user()
    u4 = await safe.user()
    await pair(u3, w2)
    await pair(u4, w2)
    late: list[Client] = []
    for place in range(2):
        q = await (leader, safe)[place].user()
        await q.send({"type": "connect"})
        await q.expect("connect_queue", payload={"location": place})
        late.append(q)
    await say(u1, w1, "before")

    doomed.kill()
    # after heartbeat TTL + resume grace, w1's users hear `disconnected` from w1's socket,
    # then go to the front, in their order
    await u1.expect("disconnected", timeout=10, from_=w1.uuid)
    await u1.expect("connect_queue", payload={"location": 0})
    await u2.expect("disconnected", from_=w1.uuid)
    await u2.expect("connect_queue", payload={"location": 1})
    await late[0].expect("connect_queue", payload={"location": 2})
    await late[1].expect("connect_queue", payload={"location": 3})
    status = await cluster.wait_for(lambda s: s["pending_num"] == 4, what="4 pending")
    assert doomed.name not in status["nodes"]
    assert status["matchers"] == {w2.uuid: [u3.uuid, u4.uuid]}

    # and another waiter serves them first
    for ended, front in ((u3, u1), (u4, u2)):
        await w2.send({"type": "disconnect", "payload": {"uuid": ended.uuid}})
        await w2.expect("disconnected", from_=ended.uuid)
        await w2.expect("new_connection", from_=front.uuid)
        await front.expect("connect_success", skip=("connect_queue",), from_=w2.uuid)
    await say(u1, w2, "served again")
    await say(w2, u2, "you too")
