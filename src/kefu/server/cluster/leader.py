"""The leader: the one node of a cluster that runs the desk.

`Leader` exists on a node only while it holds the lease (`ClusterMember`
makes it with the lease's fencing token, and stops it when the lease is
lost). It runs the same `Desk` as one node does, with a `ClusterPlacement`
that sends each node the orders about its sockets. In order, it:

1. claims the token as the database's leader epoch, so the lifecycle
   records of any older leader are refused from then on (`Store.write` with
   an epoch); a leader whose token is not newer than the epoch stops;
2. rebuilds the desk from SQL after committing this node's queued writes;
3. asks every live node for its sockets and re-announces them
   (`rebuild.py`);
4. reads the event stream from the last acked position (`stream.py`) and
   publishes the cluster's status (`status.py`).

Nodes whose heartbeat expired have their sockets treated as closed (the
resume grace applies); a node that comes back is asked for its sockets again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any, Protocol

from kefu.broker.base import Broker
from kefu.core import events as e
from kefu.server.background import spawn
from kefu.server.cluster.placement import ClusterPlacement, Nodes
from kefu.server.cluster.rebuild import Rebuild
from kefu.server.cluster.status import StatusPublisher, snapshot
from kefu.server.cluster.stream import StreamReader, retry
from kefu.server.cluster.wire import InventoryItem
from kefu.server.desk import Desk
from kefu.server.metrics import Metrics
from kefu.server.retention import Retention
from kefu.server.webhooks import delivery_worker
from kefu.settings import Settings
from kefu.store.base import Store

log = logging.getLogger("kefu.leader")


class Deposed(Exception):
    """A newer leader's epoch is in the database already: this one must not act."""


class Host(Nodes, Protocol):
    """What the leader needs of the node it runs on (`ClusterMember`)."""

    name: str
    settings: Settings
    store: Store
    broker: Broker
    live: set[str]
    metrics: Metrics  # the node's: the desk counts into it while this node leads

    def new_id(self) -> str: ...


class Leader:
    def __init__(self, host: Host, token: int) -> None:
        self.host = host
        self.token = token
        self.node = host.name
        self.placement = ClusterPlacement(self.node, token, host.store, host)
        self.desk = Desk(
            host.settings,
            host.store,
            self.placement,
            host.new_id,
            epoch=token,
            metrics=host.metrics,
        )
        self.desk.on_timer = self._after_timer
        wait = min(2.0, max(0.2, host.settings.lease_ttl / 2))
        self.rebuild = Rebuild(self.desk, self.placement, wait)
        self.stream = StreamReader(
            self.node, host.broker, host.store, self._on_event, self.placement.flush
        )
        self.status = StatusPublisher(self.node, host.broker, self.snapshot, host.settings.node_ttl)
        self.live: set[str] = set(host.live) | {self.node}
        self.started = time.monotonic()
        self.ready_at: float | None = None  # when the rebuild was done
        self._tasks: list[asyncio.Task[None]] = []
        self._stopped = False

    # -- the leader's life -------------------------------------------------------------
    async def run(self) -> None:
        self.placement.start()
        await self._claim_epoch()
        await self._restore()
        live = set(await retry(self.node, self.host.broker.live_nodes)) | {self.node}
        self.live = live
        # nodes this node saw alive before are waited for too (up to the timeout): after a
        # Redis restart their heartbeats are not back yet, but they are about to answer
        await self.rebuild.gather(live | self.placement.nodes)
        await self.stream.start()
        self._tasks += [
            spawn(self.stream.ack(), "kefu-leader-ack"),
            spawn(self.status.run(), "kefu-leader-status"),
        ]
        retention = Retention(self.host.store, self.host.settings)  # only the leader purges
        if retention.enabled:
            self._tasks.append(spawn(retention.run(), "kefu-leader-retention"))
        host = self.host  # webhooks: only the leader delivers
        hooks = delivery_worker(host.settings, host.store, host.new_id, host.metrics.webhooks)
        self._tasks.append(spawn(hooks.run(), "kefu-leader-webhooks"))
        self.ready_at = time.monotonic()
        desk = self.desk
        log.warning(
            "node %s leads (token %d): rebuilt in %.2fs, %d nodes, %d queued, %d conversations",
            self.node,
            self.token,
            self.ready_at - self.started,
            len(self.rebuild.inventoried),
            len(desk.switchboard.queue()),
            len(desk.switchboard.conversations()),
        )
        await self.stream.read()

    async def stop(self) -> None:
        self._stopped = True
        self.stream.stop()
        self.desk.close()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.placement.stop()

    async def _claim_epoch(self) -> None:
        store = self.host.store
        if not await retry(self.node, lambda: store.claim_epoch(self.token)):
            raise Deposed(f"a leader newer than token {self.token} has written already")

    async def _restore(self) -> None:
        async def load() -> tuple[int, int]:
            await self.host.store.flush()  # this node's own queued records first
            return await self.desk.restore()

        await retry(self.node, load)
        self.placement.flush()

    # -- events ------------------------------------------------------------------------------
    def _on_event(self, origin: str, op_id: str | None, event: e.Event) -> None:
        placement = self.placement
        placement.nodes.add(origin)
        socket: str | None = getattr(event, "socket", None)
        if isinstance(event, e.UserAuthed | e.WaiterAuthed):
            if self.desk.switchboard.account_of(event.socket) is None:  # else in an inventory
                placement.socket_nodes[event.socket] = origin
                self.desk.handle(event, op_id)
            placement.settled(event.socket)
        elif isinstance(event, e.SocketClosed):
            self.desk.handle(event, op_id)
            placement.socket_nodes.pop(event.socket, None)
            self.rebuild.forget(event.socket)
        else:
            if socket is not None:
                placement.socket_nodes.setdefault(socket, origin)
            self.desk.handle(event, op_id)
        self.status.dirty.set()

    def _after_timer(self) -> None:
        self.placement.flush()
        self.status.dirty.set()

    def on_inventory(self, node: str, items: list[InventoryItem]) -> None:
        if not self._stopped:
            self.rebuild.on_inventory(node, items)
            self.status.dirty.set()

    def check_nodes(self, live: set[str]) -> None:
        """Called with the live nodes after each heartbeat: drop the dead, ask the new."""
        if self._stopped or self.rebuild.gathering:
            return
        live = live | {self.node}
        self.live = live
        placement = self.placement
        placement.nodes |= live
        dead = {n for n in placement.nodes if n not in live}
        if dead:
            gone = [s for s, n in placement.socket_nodes.items() if n in dead]
            log.warning(
                "leader: nodes %s stopped beating; %d sockets dropped", sorted(dead), len(gone)
            )
            for socket in gone:
                self.desk.handle(e.SocketClosed(socket))
                placement.socket_nodes.pop(socket, None)
            placement.nodes -= dead
            self.rebuild.inventoried -= dead
            self.status.dirty.set()
        self.rebuild.ask_unknown(live)
        placement.flush()

    def node_of(self, socket: str) -> str | None:
        return self.placement.socket_nodes.get(socket)

    def snapshot(self) -> dict[str, Any]:
        return snapshot(self.desk, self.placement, self.live)
