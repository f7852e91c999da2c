"""Probes and metrics in a cluster: PostgreSQL or Redis taken away (TCP proxies) and back."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from .conftest import Cluster, MakeCluster, Node

ALL_OK = {"store": "ok", "broker": "ok", "leader": "ok"}


async def readyz(node: Node) -> tuple[int, dict[str, Any]]:
    async with httpx.AsyncClient(trust_env=False, timeout=10) as http:
        resp = await http.get(f"{node.url}/readyz")
    body: dict[str, Any] = resp.json()
    return resp.status_code, body


async def until_ready(
    cluster: Cluster, ready: bool, check: Any = None, timeout: float = 30
) -> None:
    """Poll every node's /readyz until each is (not) ready and `check(checks)` holds."""
    deadline = time.monotonic() + timeout
    for node in cluster.nodes:
        while True:
            status, body = await readyz(node)
            ok = status == (200 if ready else 503)
            if ok and (check is None or check(body["checks"])):
                break
            assert time.monotonic() < deadline, f"node {node.index}: {status} {body}"
            await asyncio.sleep(0.1)


async def scrape(node: Node) -> dict[str, float]:
    """Unlabelled samples and `name{k=v}` ones, from the node's /metrics."""
    async with httpx.AsyncClient(trust_env=False, timeout=10) as http:
        resp = await http.get(f"{node.url}/metrics")
    assert resp.status_code == 200, resp.text
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(resp.text):
        for s in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()))
            out[f"{s.name}{{{labels}}}" if labels else s.name] = s.value
    return out


async def test_readyz_follows_postgres_and_redis(make_cluster: MakeCluster) -> None:
    cluster = await make_cluster(2, proxied=True)
    assert cluster.pg_proxy is not None and cluster.redis_proxy is not None
    for node in cluster.nodes:
        status, body = await readyz(node)
        assert status == 200, body
        assert body == {"status": "ready", "checks": ALL_OK}

    cluster.pg_proxy.down()
    try:
        await until_ready(
            cluster,
            False,
            lambda c: c["store"] == "write failed (StoreUnavailable)" and c["broker"] == "ok",
        )
    finally:
        cluster.pg_proxy.up()
    await until_ready(cluster, True, lambda c: c == ALL_OK)

    cluster.redis_proxy.down()
    try:
        await until_ready(
            cluster,
            False,
            lambda c: (
                c["broker"].startswith("unreachable")
                and c["leader"] == "unknown: the broker does not answer"  # the leader stepped down
                and c["store"] == "ok"
            ),
        )
    finally:
        cluster.redis_proxy.up()
    await until_ready(cluster, True, lambda c: c == ALL_OK)
    for node in cluster.nodes:
        assert (await scrape(node))["kefu_broker_reconnects_total"] >= 1
    leaders = [(await scrape(node))["kefu_leader"] for node in cluster.nodes]
    deadline = time.monotonic() + 15
    while sorted(leaders) != [0.0, 1.0]:  # once elected again, exactly one node leads
        assert time.monotonic() < deadline, leaders
        await asyncio.sleep(0.2)
        leaders = [(await scrape(node))["kefu_leader"] for node in cluster.nodes]


async def test_every_node_reports_the_deployments_figures(make_cluster: MakeCluster) -> None:
    cluster = await make_cluster(2)
    leader = await cluster.leader()
    other = next(n for n in cluster.nodes if n is not leader)
    waiter = await leader.waiter()
    users = [await other.user(), await other.user()]
    await users[0].send({"type": "connect"})
    await users[0].expect("connect_success", from_=waiter.uuid)
    await waiter.expect("new_connection")
    await waiter.send({"type": "unready"})
    await waiter.expect("unready")
    await users[1].send({"type": "connect"})
    await users[1].expect("connect_queue")
    want = {
        "kefu_queue_length": 1.0,
        "kefu_waiters_ready": 0.0,
        "kefu_conversations_active": 1.0,
    }
    deadline = time.monotonic() + 10
    for node in cluster.nodes:
        while True:
            got = await scrape(node)
            if {k: got.get(k) for k in want} == want:
                break
            assert time.monotonic() < deadline, (node.index, {k: got.get(k) for k in want})
            await asyncio.sleep(0.1)
    # the sockets are each node's own; the desk's counters are the leader's
    on_other = await scrape(other)
    assert on_other["kefu_sockets{side=user,state=authenticated}"] == 2
    assert on_other["kefu_sockets{side=waiter,state=authenticated}"] == 0
    assert on_other["kefu_leader"] == 0
    on_leader = await scrape(leader)
    assert on_leader["kefu_sockets{side=waiter,state=authenticated}"] == 1
    assert on_leader["kefu_leader"] == 1
    assert on_leader["kefu_queue_wait_seconds_count"] == 1
