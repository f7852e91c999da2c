"""Measure a cluster on this machine: acked messages per second, user->waiter latency, failover.

    .venv/bin/python tests/cluster/measure.py [--pairs 50] [--seconds 5] [--rate 10]

Two nodes on PostgreSQL and Redis (see services.py for the addresses):

* **same node**: every user and its waiter on node 1; **cross node**: users on
  node 1, waiters on node 2 (each message crosses Redis pub/sub).
* **saturated**: each user sends its next message as soon as the previous is
  acked; gives acked messages per second and the latency under that load.
* **paced**: each user sends `--rate` messages per second; latency at a
  moderate load.
* **failover**: three nodes, SIGKILL the leader, time until a surviving node
  reports a new leader and until a new user is served.

Latency is from the user's send to the waiter's receipt, on one clock (this
process). The load generator runs on the same machine as the nodes, the
database and Redis, so the figures are a floor for what the server can do.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cluster.conftest import Cluster, Node, start_cluster
from support.client import Client, new_op_id, pair


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


async def pairs_on(user_node: Node, waiter_node: Node, n: int) -> list[tuple[Client, Client]]:
    out = []
    for _ in range(n):
        waiter = await waiter_node.waiter()
        user = await user_node.user()
        await pair(user, waiter)
        out.append((user, waiter))
    return out


async def run_load(
    pairs: list[tuple[Client, Client]], seconds: float, rate: float | None
) -> dict[str, Any]:
    sent_at: dict[str, float] = {}
    latencies: list[float] = []
    acked = 0
    stop = time.monotonic() + seconds

    async def receiver(waiter: Client) -> None:
        with contextlib.suppress(asyncio.CancelledError):
            while True:
                raw = await waiter.ws.recv()
                now = time.monotonic()
                text = raw if isinstance(raw, str) else raw.decode()
                key = text.partition('"text":"')[2].partition('"')[0]
                start = sent_at.pop(key, None)
                if start is not None:
                    latencies.append(now - start)

    async def sender(user: Client, k: int) -> None:
        nonlocal acked
        i = 0
        if rate:  # spread the senders over the period: no lockstep bursts
            await asyncio.sleep(k / len(pairs) / rate)
        while time.monotonic() < stop:
            key = f"p{k}m{i}"
            op = new_op_id()
            frame = json.dumps(
                {"type": "message_text", "op_id": op, "payload": {"text": key}},
                separators=(",", ":"),
            )
            t0 = time.monotonic()
            sent_at[key] = t0
            await user.ws.send(frame)
            while True:
                raw = await user.ws.recv()
                if op in raw:
                    break
            acked += 1
            i += 1
            if rate:
                await asyncio.sleep(max(0.0, t0 + 1 / rate - time.monotonic()))

    receivers = [asyncio.ensure_future(receiver(w)) for _, w in pairs]
    started = time.monotonic()
    await asyncio.gather(*(sender(u, k) for k, (u, _) in enumerate(pairs)))
    elapsed = time.monotonic() - started
    await asyncio.sleep(0.5)
    for r in receivers:
        r.cancel()
    await asyncio.gather(*receivers)
    return {
        "acked_per_s": acked / elapsed,
        "p50_ms": pct(latencies, 0.50) * 1000,
        "p99_ms": pct(latencies, 0.99) * 1000,
        "samples": len(latencies),
    }


async def measure_placement(cluster: Cluster, args: argparse.Namespace) -> None:
    for label, users, waiters in (
        ("same node ", cluster[0], cluster[0]),
        ("cross node", cluster[0], cluster[1]),
    ):
        pairs = await pairs_on(users, waiters, args.pairs)
        sat = await run_load(pairs, args.seconds, None)
        paced = await run_load(pairs, args.seconds, args.rate)
        print(
            f"{label}: saturated {sat['acked_per_s']:7.0f} acked msg/s, "
            f"p50 {sat['p50_ms']:6.1f} ms, p99 {sat['p99_ms']:6.1f} ms | "
            f"paced {paced['acked_per_s']:5.0f} msg/s: p50 {paced['p50_ms']:5.1f} ms, "
            f"p99 {paced['p99_ms']:5.1f} ms ({paced['samples']} samples)",
            flush=True,
        )
        for node in (users, waiters):
            await node.close_clients()
        await asyncio.sleep(0.5)


async def measure_failover(cluster: Cluster) -> None:
    leader = await cluster.leader()
    survivors = [n for n in cluster.nodes if n is not leader]
    waiter = await survivors[0].waiter()
    t0 = time.monotonic()
    leader.kill()
    names = {n.name for n in survivors}
    await cluster.wait_for(lambda s: s.get("leader") in names, timeout=30, nodes=survivors)
    reported = time.monotonic() - t0
    user = await survivors[1].user()
    await user.send({"type": "connect"})
    await user.expect("connect_success", timeout=30, from_=waiter.uuid)
    served = time.monotonic() - t0
    print(
        f"failover: new leader reported {reported:.2f}s after SIGKILL, "
        f"a new user served at {served:.2f}s",
        flush=True,
    )


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pairs", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rate", type=float, default=10.0)
    parser.add_argument("--lease-ttl", type=float, default=2.0)
    args = parser.parse_args()
    settings = {"max_users_per_waiter": 5, "log_level": "error"}
    with tempfile.TemporaryDirectory() as tmp:
        cleanup: list[Any] = []
        try:
            two = await start_cluster(Path(tmp) / "two", cleanup, 2, **settings)
            await measure_placement(two, args)
            for n in two.nodes:
                n.stop()
            three = await start_cluster(
                Path(tmp) / "three",
                cleanup,
                3,
                lease_ttl=args.lease_ttl,
                node_ttl=args.lease_ttl,
                **settings,
            )
            await measure_failover(three)
        finally:
            for fn in reversed(cleanup):
                with contextlib.suppress(Exception):
                    fn()


if __name__ == "__main__":
    asyncio.run(main())
