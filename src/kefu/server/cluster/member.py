"""A cluster member: this node's part in a cluster (KEFU_BROKER_URL set); see docs/cluster.md.

Each node owns its sockets and its message path (`Node`), as one node does;
what the member adds:

* lifecycle events go into the broker's event stream (`submit`) instead of
  to a desk in this process. Whichever node holds the lease runs the desk
  (`leader.Leader`) and sends each node the orders about its sockets;
* orders arrive on this node's channel with the leader's fencing token; a
  batch with a token older than one already seen is ignored, so a deposed
  leader cannot act after its successor started;
* the message path is unchanged up to the point of delivery: a frame for a
  socket on another node is published to that node's channel, batched per
  destination and retried while nobody listens there (a Redis restart), for
  up to `HOLD` seconds or until the node is known dead;
* background tasks: the heartbeat (+ node id claim, + the live node list),
  the lease loop (acquire / renew / step down before the TTL can run out),
  the event outbox, one outbox per destination node, and the leader while
  leading.

Limits: the per-account socket limit is per node. Frames to another node are
at-most-once once published (clients dedupe by id and replay on resume);
lifecycle events are buffered (up to `OUTBOX_MAX`) while the broker is
unreachable and appended when it is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from typing import Any

from kefu import logs
from kefu.broker.base import Broker, BrokerError
from kefu.core import events as e
from kefu.core.model import Role
from kefu.ids import IdGenerator
from kefu.server.background import spawn
from kefu.server.cluster.leader import Leader
from kefu.server.cluster.outbox import Outbox
from kefu.server.cluster.status import StatusReader
from kefu.server.cluster.wire import (
    FRAME,
    INVENTORY,
    ORDERS,
    InventoryItem,
    decode_inventory,
    decode_orders,
    encode_event,
    frame_message,
    inventory_message,
    orders_message,
    split_frame,
)
from kefu.server.node import Node
from kefu.server.orders import AskInventory, Deliver, Order, Rebuilt, Settled
from kefu.settings import Settings
from kefu.store.base import Store

log = logging.getLogger("kefu.cluster")

HOLD = 30.0  # seconds an undelivered message is retried for a live node


class ClusterMember:
    def __init__(self, node: Node, broker: Broker) -> None:
        self.node = node
        self.settings: Settings = node.settings
        self.store: Store = node.store
        self.broker = broker
        self.instance = uuid.uuid4().hex[:8]
        self.node_id = self.settings.node_id
        self.name = f"{self.node_id}-{self.instance}"  # final once started
        self.token_seen = 0
        self.live: set[str] = set()
        self.leader: Leader | None = None
        self.status = StatusReader(broker)
        self.metrics = node.metrics
        self._leader_task: asyncio.Task[None] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._outboxes: dict[str, Outbox] = {}
        self._events: Outbox | None = None
        self._ready: set[str] = set()  # local waiter sockets that are ready
        self._locations: dict[str, int] = {}  # local user socket -> queue place last sent
        self._settling: dict[str, asyncio.Future[None]] = {}  # socket -> its auth decided
        self._broker_down = False
        self._absent: dict[str, float] = {}  # node with an outbox -> since when it is not live
        node.submit = self.submit
        node.remote = self.send_remote
        self.store.on_fenced = self.fenced

    def new_id(self) -> str:
        return self.node.ids()

    # -- start and stop ------------------------------------------------------------------
    async def start(self) -> None:
        """Join the cluster (the leader, not this, rebuilds from SQL)."""
        await self.broker.start()
        self.node_id = await self._claim_node_id()
        self.node.ids = IdGenerator(self.node_id)
        self.name = f"{self.node_id}-{self.instance}"
        logs.set_node(self.name)
        await self.broker.subscribe(self.name, self._on_message)
        await self.broker.heartbeat(self.name, self.settings.node_ttl)
        self.live = set(await self.broker.live_nodes()) | {self.name}
        self._events = Outbox("kefu-events", self._append_events, lambda _failing_for: False)
        self._tasks = [
            spawn(self._heartbeat_loop(), "kefu-heartbeat"),
            spawn(self._lease_loop(), "kefu-lease"),
        ]
        log.warning("cluster node %s joined (%d live nodes)", self.name, len(self.live))

    async def _claim_node_id(self) -> int:
        explicit = "node_id" in self.settings.model_fields_set
        wanted = self.settings.node_id if explicit else None
        deadline = time.monotonic() + self.settings.node_ttl + 5.0
        while True:
            try:
                got = await self.broker.claim_node_id(self.instance, self.settings.node_ttl, wanted)
            except BrokerError as exc:
                got, reason = None, str(exc)
            else:
                reason = f"node id {wanted} is held by another live node"
            if got is not None:
                return got
            if time.monotonic() > deadline:
                raise RuntimeError(f"cannot join the cluster: {reason}")
            await asyncio.sleep(0.5)

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        leader = self.leader
        if leader is not None:
            await self._step_down("shutting down")
            with contextlib.suppress(BrokerError):
                await self.broker.release_lease(self.name, leader.token)
        await self.node.close()
        with contextlib.suppress(BrokerError):
            await self.broker.leave(self.name)
        if self._events is not None:
            await _drain(self._events, 0.5)
            await self._events.stop()
        for outbox in self._outboxes.values():
            await outbox.stop()
        await self.broker.close()

    # -- background loops --------------------------------------------------------------------
    async def _heartbeat_loop(self) -> None:
        ttl = self.settings.node_ttl
        while True:
            await asyncio.sleep(ttl / 3)
            try:
                await self.broker.heartbeat(self.name, ttl)
                if await self.broker.claim_node_id(self.instance, ttl, self.node_id) is None:
                    log.error("node id %d was taken by another node", self.node_id)
                self.live = set(await self.broker.live_nodes()) | {self.name}
            except BrokerError as exc:
                if not self._broker_down:
                    log.warning("node %s: broker unreachable: %s", self.name, exc)
                self._broker_down = True
                continue
            if self._broker_down:
                log.warning("node %s: broker reachable again", self.name)
                self._broker_down = False
                self._absent.clear()  # a restarted Redis lost the heartbeats: let them come back
                continue
            now = time.monotonic()
            for node in self._outboxes:
                if node in self.live:
                    self._absent.pop(node, None)
                else:
                    self._absent.setdefault(node, now)
            idle = [n for n, o in self._outboxes.items() if n not in self.live and not o.items]
            for node in idle:
                self._absent.pop(node, None)
                await self._outboxes.pop(node).stop()
            if self.leader is not None:
                self.leader.check_nodes(self.live)

    async def _lease_loop(self) -> None:
        ttl = self.settings.lease_ttl
        interval = ttl / 3
        deadline = 0.0  # step down at this (monotonic) time unless renewed
        while True:
            leader = self.leader
            sent = time.monotonic()
            if leader is None:
                try:
                    async with asyncio.timeout(ttl / 2):
                        token = await self.broker.acquire_lease(self.name, ttl, self.token_seen)
                except (BrokerError, TimeoutError):
                    token = None
                if token is not None:
                    deadline = sent + ttl * 0.9
                    self._become_leader(token)
            else:
                ok: bool | None
                try:
                    async with asyncio.timeout(max(0.01, deadline - sent)):
                        ok = await self.broker.renew_lease(self.name, leader.token, ttl)
                except (BrokerError, TimeoutError):
                    ok = None
                if ok:
                    deadline = sent + ttl * 0.9
                elif ok is False:
                    await self._step_down("the lease was lost")
                if self.leader is not None and time.monotonic() >= deadline:
                    await self._step_down("the lease could not be renewed in time")
            pause = interval
            if self.leader is not None:
                pause = max(0.0, min(interval, deadline - time.monotonic()))
            await asyncio.sleep(pause)

    def _become_leader(self, token: int) -> None:
        self.token_seen = max(self.token_seen, token)
        leader = self.leader = Leader(self, token)
        task = asyncio.get_running_loop().create_task(leader.run(), name="kefu-leader")
        self._leader_task = task

        def done(t: asyncio.Task[None]) -> None:
            if t.cancelled() or self.leader is not leader:
                return
            log.error("leader failed; stepping down", exc_info=t.exception())
            asyncio.get_running_loop().create_task(self._step_down("the leader failed"))

        task.add_done_callback(done)

    async def _step_down(self, why: str) -> None:
        leader, self.leader = self.leader, None
        if leader is None:
            return
        log.warning("node %s stops leading (token %d): %s", self.name, leader.token, why)
        task, self._leader_task = self._leader_task, None
        if task is not None:
            task.cancel()
        await leader.stop()
        if task is not None:
            with contextlib.suppress(BaseException):
                await task

    def fenced(self, epoch: int) -> None:
        """The store refused this node's writes as an old leader's: stop leading at once."""
        leader = self.leader
        if leader is not None and leader.token <= epoch:
            asyncio.get_running_loop().create_task(
                self._step_down("the database has a newer leader's epoch")
            )

    # -- lifecycle events go to the leader -------------------------------------------------------
    def submit(self, event: e.Event, op_id: str | None = None) -> None:
        if isinstance(event, e.SocketClosed):
            self._ready.discard(event.socket)
            self._locations.pop(event.socket, None)
            waiting = self._settling.pop(event.socket, None)
            if waiting is not None:
                waiting.cancel()
        elif isinstance(event, e.UserAuthed | e.WaiterAuthed):
            self._settling[event.socket] = asyncio.get_running_loop().create_future()
        if self._events is None:
            log.error(
                "event %s before the node joined the cluster: dropped",
                type(event).__name__,
                extra={"socket": getattr(event, "socket", None), "op_id": op_id},
            )
            return
        self._events.push(encode_event(self.name, op_id, event))

    async def _append_events(self, batch: list[bytes]) -> bool:
        await self.broker.append_events(batch)
        return True

    async def settled(self, socket: str, timeout: float = 5.0) -> None:
        """Wait until the leader decided this socket's auth (its routes are then here).

        On one node that is immediate; here the decision takes a round trip through
        the leader. Gives up after `timeout` (no leader): the caller goes on anyway.
        """
        waiting = self._settling.get(socket)
        if waiting is not None:
            with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                async with asyncio.timeout(timeout):
                    await asyncio.shield(waiting)

    async def cluster_status(self) -> dict[str, Any]:
        return await self.status.read(self.name)

    # -- delivery to other nodes ----------------------------------------------------------------
    def outbox(self, node: str) -> Outbox:
        outbox = self._outboxes.get(node)
        if outbox is None:

            async def send(batch: list[bytes]) -> bool:
                return await self.broker.publish_batch(node, batch) > 0

            def give_up(failing_for: float) -> bool:
                absent = self._absent.get(node)
                gone = absent is not None and time.monotonic() - absent > self.settings.node_ttl
                return failing_for > HOLD or gone

            outbox = self._outboxes[node] = Outbox(f"kefu-outbox-{node}", send, give_up)
        return outbox

    def send_remote(self, socket: str, frame: bytes) -> None:
        """The message path's delivery to a socket this node does not hold."""
        node = self.leader.node_of(socket) if self.leader is not None else None
        if node is None:
            node = self.node.routes.node_of(socket)
        if node is not None and node != self.name:
            self.outbox(node).push(frame_message(socket, frame))

    def send_orders(self, node: str, token: int, orders: list[Order]) -> None:
        self.outbox(node).push(orders_message(token, orders))

    # -- what arrives on this node's channel -------------------------------------------------------
    def _on_message(self, data: bytes) -> None:
        kind = data[:1]
        if kind == FRAME:
            socket, frame = split_frame(data)
            conn = self.node.connections.get(socket)
            if conn is not None:
                conn.push(frame)
        elif kind == ORDERS:
            batch = decode_orders(data)
            self.apply_local(batch.token, batch.orders)
        elif kind == INVENTORY:
            inventory = decode_inventory(data)
            leader = self.leader
            if leader is not None and leader.token == inventory.token:
                leader.on_inventory(inventory.node, inventory.items)
        else:
            log.error("unknown node message kind %r", kind)

    def apply_local(self, token: int, orders: list[Order]) -> None:
        """Carry out a leader's orders for this node, unless a newer leader exists."""
        if token < self.token_seen:
            log.info("ignored %d orders of an old leader (token %d)", len(orders), token)
            return
        self.token_seen = token
        node = self.node
        for order in orders:
            match order:
                case Deliver(socket, _frame, kind, location):
                    if node.reaches(socket):
                        self._track(socket, kind, location)
                        node.apply(order)
                case AskInventory(leader_node):
                    self._answer_inventory(token, leader_node)
                case Settled(socket):
                    waiting = self._settling.pop(socket, None)
                    if waiting is not None and not waiting.done():
                        waiting.set_result(None)
                case Rebuilt(conversations):
                    node.routes.keep_only(set(conversations))
                case _:
                    node.apply(order)

    def _track(self, socket: str, kind: str, location: int | None) -> None:
        """Remember what a re-announce must not repeat (see `Rebuild.known`)."""
        if kind == "connect_queue" and location is not None:
            self._locations[socket] = location
        elif kind in ("connect_success", "disconnected"):
            self._locations.pop(socket, None)
        elif kind == "ready":
            self._ready.add(socket)
        elif kind in ("unready", "kickout"):
            self._ready.discard(socket)

    def inventory(self) -> list[InventoryItem]:
        """This node's live authenticated sockets, for a new leader."""
        items: list[InventoryItem] = []
        routes = self.node.routes
        for conn in self.node.connections:
            account = conn.account
            if account is None or conn.closing is not None:
                continue
            socket = conn.socket
            if conn.side is Role.USER:
                route = routes.of_user_socket(socket)
                peer = route.waiter_socket if route is not None else None
                location = self._locations.get(socket)
                item = InventoryItem(
                    socket, Role.USER, account.profile(), False, [peer] if peer else [], location
                )
            else:
                users = [r.user_socket for r in routes.of_waiter_socket(socket) if r.user_socket]
                item = InventoryItem(
                    socket, Role.WAITER, account.profile(), socket in self._ready, users
                )
            items.append(item)
        return items

    def _answer_inventory(self, token: int, leader_node: str) -> None:
        items = self.inventory()
        if leader_node == self.name:
            leader = self.leader
            if leader is not None and leader.token == token:
                leader.on_inventory(self.name, items)
            return
        self.outbox(leader_node).push(inventory_message(token, self.name, items))


async def _drain(outbox: Outbox, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while outbox.items and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
