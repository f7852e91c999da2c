"""The cluster's status: the leader publishes a snapshot through the broker, every node reads it.

`GET /v1/ws/status` on any node answers the whole cluster: the desk's
figures as on one node, plus [ext] `leader`, `nodes` (per node: its users
and waiters, whether it leads), `ready_waiter_num`, `conversation_num` (for
`/metrics`) and `node` (who answered).

The snapshot also carries the queue and the waiters (`live`, for the admin
API's `GET /live` on any node: `StatusReader.live`); the public status
leaves them out.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable
from typing import Any

from kefu.broker.base import Broker, BrokerError
from kefu.core.model import Role
from kefu.server.cluster.placement import ClusterPlacement
from kefu.server.desk import Desk
from kefu.server.live import QUEUE_SHOWN, LiveView, from_json, to_json

log = logging.getLogger("kefu.cluster")

STATUS_KEY = "status"
LIVE = "live"  # the snapshot's queue and waiters: for the admin API, not the public status

EMPTY_STATUS: dict[str, Any] = {
    "online_waiter_num": 0,
    "online_user_num": 0,
    "pending_num": 0,
    "matchers": {},
    "leader": None,
    "nodes": {},
}


def snapshot(desk: Desk, placement: ClusterPlacement, live: set[str]) -> dict[str, Any]:
    """The leader's view of the whole cluster."""
    s = desk.status()
    nodes: dict[str, dict[str, Any]] = {
        n: {"online_user_num": 0, "online_waiter_num": 0, "leader": n == placement.node}
        for n in sorted(live)
    }
    for socket, node in placement.socket_nodes.items():
        owner = desk.switchboard.account_of(socket)
        if owner is None:
            continue
        entry = nodes.setdefault(
            node, {"online_user_num": 0, "online_waiter_num": 0, "leader": False}
        )
        entry["online_user_num" if owner[0] is Role.USER else "online_waiter_num"] += 1
    return {
        "online_waiter_num": s.online_waiter_num,
        "online_user_num": s.online_user_num,
        "pending_num": s.pending_num,
        "matchers": s.matchers,
        "ready_waiter_num": desk.switchboard.ready_waiters(),
        "conversation_num": desk.switchboard.conversation_count(),
        "leader": placement.node,
        "nodes": nodes,
        LIVE: to_json(LiveView(desk.switchboard.live(QUEUE_SHOWN), time.time())),
    }


class StatusPublisher:
    """The leader's loop: publish the snapshot when it changed (at least every interval)."""

    def __init__(
        self, name: str, broker: Broker, make: Callable[[], dict[str, Any]], node_ttl: float
    ) -> None:
        self._name = name
        self._broker = broker
        self._make = make
        self._interval = node_ttl / 3
        self._ttl = max(10.0, 3 * node_ttl)
        self.dirty = asyncio.Event()

    async def run(self) -> None:
        while True:
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow a
            # cancellation that comes as the event is set, and this loop would never stop
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._interval):
                    await self.dirty.wait()
            self.dirty.clear()
            data = json.dumps(self._make(), separators=(",", ":")).encode()
            try:
                await self._broker.put(STATUS_KEY, data, self._ttl)
            except Exception as exc:
                log.warning("leader %s: status not published: %s", self._name, exc)
                self.dirty.set()
                await asyncio.sleep(0.5)
            await asyncio.sleep(0.05)


class StatusReader:
    """A node's view: the leader's latest snapshot, the last one seen if the broker is away."""

    def __init__(self, broker: Broker) -> None:
        self._broker = broker
        self.snapshot: dict[str, Any] = dict(EMPTY_STATUS)
        self._seen = False

    async def read(self, node: str) -> dict[str, Any]:
        try:
            raw = await self._broker.get(STATUS_KEY)
        except BrokerError:
            raw = None if self._seen else b""  # keep the last one
        if raw is not None:
            self.snapshot = json.loads(raw) if raw else dict(EMPTY_STATUS)
            self._seen = bool(raw)
        public = {k: v for k, v in self.snapshot.items() if k != LIVE}
        return {**public, "node": node}

    async def live(self) -> LiveView:
        """The queue and the waiters as the leader last published them."""
        await self.read("")
        return from_json(self.snapshot.get(LIVE))
