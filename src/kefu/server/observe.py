"""What lets operators watch a node: `/healthz`, `/readyz` (`probes.py`) and `/metrics`.

`observe_routes` wires them (and `exporter.py`) to the deployment: on one
node the figures come from the desk in this process and the node always
leads; a cluster member reads the leader's status snapshot (its own desk's
while it leads) and checks the broker and the lease besides the store.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from starlette.routing import Route

from kefu.server.desk import Desk
from kefu.server.exporter import FIGURES_TIMEOUT, Allowed, Exporter, Figures, metrics_route
from kefu.server.node import Node
from kefu.server.probes import Readiness, probe_routes
from kefu.settings import Settings
from kefu.store.edge import StoreEdge

if TYPE_CHECKING:
    from kefu.server.cluster.member import ClusterMember


def observe_routes(
    settings: Settings, node: Node, desk: Desk | None, member: ClusterMember | None
) -> list[Route]:
    """The probe and metrics routes; a bad `KEFU_METRICS_ALLOW` raises ValueError (at start)."""
    allowed = Allowed(settings.metrics_allow, settings.trusted_proxies)
    store = node.store
    writer = store.writer.stats if isinstance(store, StoreEdge) else None
    if member is None:
        if desk is None:
            raise ValueError("one node needs its desk")
        one = desk

        async def desk_figures() -> Figures:
            return figures(one)

        exporter = Exporter(node, desk_figures, lambda: True, writer)
        readiness = Readiness(store)
    else:
        cluster = member

        def leading() -> bool:
            return cluster.leader is not None

        def reconnects() -> int:
            return int(getattr(cluster.broker, "reconnects", 0))

        async def snapshot() -> Figures:
            leader = cluster.leader
            if leader is not None and leader.ready_at is not None:
                return leader.snapshot()
            try:
                async with asyncio.timeout(FIGURES_TIMEOUT):
                    return await cluster.cluster_status()
            except TimeoutError:
                return cluster.status.snapshot

        def listening() -> bool:
            return bool(getattr(cluster.broker, "subscribed", True))

        exporter = Exporter(node, snapshot, leading, writer, reconnects)
        readiness = Readiness(store, member.broker, leading, listening)
    return [*probe_routes(readiness), metrics_route(exporter, allowed)]


def figures(desk: Desk) -> Figures:
    """The desk's figures, named as in the cluster's status snapshot."""
    board = desk.switchboard
    return {
        "pending_num": desk.status().pending_num,
        "ready_waiter_num": board.ready_waiters(),
        "conversation_num": board.conversation_count(),
    }
