"""Three nodes, one desk: a user and a waiter on different nodes chat both ways."""

from __future__ import annotations

from typing import Any

from support.client import pair, say

from .conftest import MakeCluster


def counts(status: dict[str, Any]) -> tuple[int, int, int]:
    return status["online_waiter_num"], status["online_user_num"], status["pending_num"]


async def test_user_and_waiter_on_different_nodes(make_cluster: MakeCluster) -> None:
    cluster = await make_cluster(3)
    waiter = await cluster[1].waiter()
    user = await cluster[0].user()
    await pair(user, waiter)
    for i in range(5):
        await say(user, waiter, f"hello {i} from node 1")
        await say(waiter, user, f"answer {i} from node 2")
    await say(user, waiter, image="https://example.com/a.png")

    # every node reports the same cluster, and who is where (a node that does not lead
    # learns the counts from the leader's next status: poll until all have it)
    def settled(s: dict[str, Any]) -> bool:
        where = s.get("nodes", {})
        return (
            counts(s) == (1, 1, 0)
            and s["matchers"] == {waiter.uuid: [user.uuid]}
            and where.get(cluster[0].name, {}).get("online_user_num") == 1
            and where.get(cluster[1].name, {}).get("online_waiter_num") == 1
        )

    await cluster.wait_for(settled, timeout=30, what="the same status on every node")
    statuses = [await n.status() for n in cluster.nodes]
    assert {counts(s) for s in statuses} == {(1, 1, 0)}
    assert all(s["matchers"] == {waiter.uuid: [user.uuid]} for s in statuses)
    nodes = statuses[0]["nodes"]
    assert nodes[cluster[0].name]["online_user_num"] == 1
    assert nodes[cluster[1].name]["online_waiter_num"] == 1
    assert [s["node"] for s in statuses] == [n.name for n in cluster.nodes]
    # ending the conversation reaches both sides across nodes
    await waiter.send({"type": "disconnect", "payload": {"uuid": user.uuid}})
    await user.expect("disconnected", from_=waiter.uuid)
    await waiter.expect("disconnected", from_=user.uuid)
    await cluster.wait_for(lambda s: s["matchers"] == {waiter.uuid: []}, what="freed waiter")
    # history is the same from any node
    other = await cluster[2].user(user.person)
    await other.send({"type": "get_history"})
    history = await other.expect("message_history")
    assert len(history["payload"]) == 11
