"""ClusterRuntime: one node of a cluster (KEFU_BROKER_URL set); see docs/cluster.md.

Each node owns its sockets and its message path, exactly as one node does
(`Runtime`); what changes:

* `submit` appends the lifecycle event (with this node and the op_id) to the
  broker's event stream instead of deciding it here. Whichever node holds
  the lease runs the switchboard (`leader.Leader`) and sends commands back.
* Commands arrive on this node's channel, tagged with the leader's fencing
  token; a batch with a token older than one already seen is ignored, so a
  deposed leader cannot act after its successor started.
* The message path is unchanged up to the point of delivery: a frame for a
  socket on another node is published to that node's channel (`send_remote`),
  batched per destination and retried while nobody listens there (a Redis
  restart), for up to `_HOLD` seconds or until the node is known dead.
* Background tasks: heartbeat (+ node id claim, + live node list), the lease
  loop (acquire / renew / step down before the TTL can run out), the event
  outbox, one outbox per destination node, and the leader while leading.

Limits: the per-account socket limit is per node. Frames to another node
are at-most-once once published (clients dedupe by id and replay on
resume); lifecycle events are buffered (up to `OUTBOX_MAX`) while the
broker is unreachable and appended when it is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import JSONResponse

from kefu.broker.base import Broker, BrokerError
from kefu.core import commands as c
from kefu.core import events as e
from kefu.core.switchboard import Status
from kefu.ids import IdGenerator
from kefu.server.connections import Connection
from kefu.server.history import History
from kefu.server.leader import STATUS_KEY, Leader
from kefu.server.origin import cors_headers
from kefu.server.outbox import Outbox
from kefu.server.runtime import Runtime
from kefu.server.wire import (
    COMMANDS,
    FRAME,
    INVENTORY,
    Cmd,
    decode_body,
    encode_event,
    frame_message,
    inventory_message,
    split_frame,
)
from kefu.settings import Settings
from kefu.store.base import Store

log = logging.getLogger("kefu.cluster")

_HOLD = 30.0  # seconds an undelivered message is retried for a live node

EMPTY_STATUS: dict[str, Any] = {
    "online_waiter_num": 0,
    "online_user_num": 0,
    "pending_num": 0,
    "matchers": {},
    "leader": None,
    "nodes": {},
}


class ClusterRuntime(Runtime):
    def __init__(self, settings: Settings, store: Store, ids: IdGenerator, broker: Broker) -> None:
        super().__init__(settings, store, ids)
        self.broker = broker
        self.instance = uuid.uuid4().hex[:8]
        self.node_id = settings.node_id
        self.node = f"{settings.node_id}-{self.instance}"  # final once started
        self.token_seen = 0
        self.live: set[str] = set()
        self.leader: Leader | None = None
        self.snapshot: dict[str, Any] = dict(EMPTY_STATUS)
        self._leader_task: asyncio.Task[None] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._outboxes: dict[str, Outbox] = {}
        self._events: Outbox | None = None
        self._remote: dict[str, list[Any]] = {}  # remote socket -> [node, routes using it]
        self._ready: set[str] = set()  # local waiter sockets that are ready
        self._locations: dict[str, int] = {}  # local user socket -> queue place last sent
        self._settling: dict[str, asyncio.Future[None]] = {}  # socket -> its auth decided
        self._broker_down = False
        self._absent: dict[str, float] = {}  # node with an outbox -> since when it is not live

    # -- start and stop ------------------------------------------------------------------
    async def restore(self) -> None:
        """Join the cluster (the leader, not this, rebuilds from SQL)."""
        await self.broker.start()
        self.node_id = await self._claim_node_id()
        self.ids = IdGenerator(self.node_id)
        self.node = f"{self.node_id}-{self.instance}"
        await self.broker.subscribe(self.node, self._on_message)
        await self.broker.heartbeat(self.node, self.settings.node_ttl)
        self.live = set(await self.broker.live_nodes()) | {self.node}
        self._events = Outbox("kefu-events", self._append_events, lambda _failing_for: False)
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._heartbeat_loop(), name="kefu-heartbeat"),
            loop.create_task(self._lease_loop(), name="kefu-lease"),
        ]
        log.warning("cluster node %s joined (%d live nodes)", self.node, len(self.live))

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
            self._step_down("shutting down")
            with contextlib.suppress(BrokerError):
                await self.broker.release_lease(self.node, leader.token)
        await super().close()
        with contextlib.suppress(BrokerError):
            await self.broker.leave(self.node)
        if self._events is not None:
            await self._drain(self._events, 0.5)
            await self._events.stop()
        for outbox in self._outboxes.values():
            await outbox.stop()
        await self.broker.close()

    @staticmethod
    async def _drain(outbox: Outbox, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while outbox.items and time.monotonic() < deadline:
            await asyncio.sleep(0.01)

    # -- background loops --------------------------------------------------------------------
    async def _heartbeat_loop(self) -> None:
        ttl = self.settings.node_ttl
        while True:
            await asyncio.sleep(ttl / 3)
            try:
                await self.broker.heartbeat(self.node, ttl)
                if await self.broker.claim_node_id(self.instance, ttl, self.node_id) is None:
                    log.error("node id %d was taken by another node", self.node_id)
                self.live = set(await self.broker.live_nodes()) | {self.node}
            except BrokerError as exc:
                if not self._broker_down:
                    log.warning("node %s: broker unreachable: %s", self.node, exc)
                self._broker_down = True
                continue
            if self._broker_down:
                log.warning("node %s: broker reachable again", self.node)
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
                    token = await asyncio.wait_for(
                        self.broker.acquire_lease(self.node, ttl, self.token_seen), ttl / 2
                    )
                except (BrokerError, TimeoutError):
                    token = None
                if token is not None:
                    deadline = sent + ttl * 0.9
                    self._become_leader(token)
            else:
                ok: bool | None
                try:
                    ok = await asyncio.wait_for(
                        self.broker.renew_lease(self.node, leader.token, ttl),
                        max(0.01, deadline - sent),
                    )
                except (BrokerError, TimeoutError):
                    ok = None
                if ok:
                    deadline = sent + ttl * 0.9
                elif ok is False:
                    self._step_down("the lease was lost")
                if self.leader is not None and time.monotonic() >= deadline:
                    self._step_down("the lease could not be renewed in time")
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
            self._step_down("the leader failed")

        task.add_done_callback(done)

    def _step_down(self, why: str) -> None:
        leader, self.leader = self.leader, None
        if leader is None:
            return
        log.warning("node %s stops leading (token %d): %s", self.node, leader.token, why)
        leader.stop()
        if self._leader_task is not None:
            self._leader_task.cancel()
            self._leader_task = None

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
            log.error("event %s before the node joined the cluster: dropped", type(event).__name__)
            return
        self._events.push(encode_event(self.node, op_id, event))

    async def _append_events(self, batch: list[bytes]) -> bool:
        await self.broker.append_events(batch)
        return True

    def status(self) -> Status:
        s = self.snapshot
        return Status(
            online_waiter_num=s["online_waiter_num"],
            online_user_num=s["online_user_num"],
            pending_num=s["pending_num"],
            matchers=s["matchers"],
        )

    async def cluster_status(self) -> dict[str, Any]:
        """The leader's latest snapshot (shared through the broker), plus who answers."""
        try:
            raw = await self.broker.get(STATUS_KEY)
        except BrokerError:
            raw = b"" if self.snapshot is EMPTY_STATUS else None  # keep the last one
        if raw is not None:
            self.snapshot = json.loads(raw) if raw else dict(EMPTY_STATUS)
        return {**self.snapshot, "node": self.node}

    # -- delivery to other nodes ----------------------------------------------------------------
    def outbox(self, node: str) -> Outbox:
        outbox = self._outboxes.get(node)
        if outbox is None:

            async def send(batch: list[bytes]) -> bool:
                return await self.broker.publish_batch(node, batch) > 0

            def give_up(failing_for: float) -> bool:
                absent = self._absent.get(node)
                gone = absent is not None and time.monotonic() - absent > self.settings.node_ttl
                return failing_for > _HOLD or gone

            outbox = self._outboxes[node] = Outbox(f"kefu-outbox-{node}", send, give_up)
        return outbox

    def node_of(self, socket: str) -> str | None:
        leader = self.leader
        if leader is not None:
            node = leader.socket_nodes.get(socket)
            if node is not None:
                return node
        ref = self._remote.get(socket)
        return ref[0] if ref is not None else None

    remote_delivery = True

    def send_remote(self, socket: str, frame: bytes) -> None:
        node = self.node_of(socket)
        if node is not None and node != self.node:
            self.outbox(node).push(frame_message(socket, frame))

    # -- what arrives on this node's channel -------------------------------------------------------
    def _on_message(self, data: bytes) -> None:
        kind = data[:1]
        if kind == FRAME:
            socket, frame = split_frame(data)
            conn = self.connections.get(socket)
            if conn is not None:
                conn.push(frame)
        elif kind == COMMANDS:
            token, cmds = decode_body(data)
            self.apply_commands(token, cmds)
        elif kind == INVENTORY:
            token, node, items = decode_body(data)
            leader = self.leader
            if leader is not None and leader.token == token:
                leader.on_inventory(node, items)
        else:
            log.error("unknown node message kind %r", kind)

    def apply_commands(self, token: int, cmds: list[list[Any]]) -> None:
        """Carry out a leader's commands for this node, unless a newer leader exists."""
        if token < self.token_seen:
            log.info("ignored %d commands of an old leader (token %d)", len(cmds), token)
            return
        self.token_seen = token
        get = self.connections.get
        for cmd in cmds:
            kind = cmd[0]
            if kind == Cmd.SEND:
                conn = get(cmd[1])
                if conn is not None:
                    self._track(cmd[1], cmd[2], cmd[3])
                    conn.push(cmd[4])
            elif kind == Cmd.ROUTE:
                self._apply_route(cmd)
            elif kind == Cmd.UNROUTE:
                self._unroute(cmd[1])
            elif kind == Cmd.CLOSE:
                conn = get(cmd[1])
                if conn is not None:
                    conn.close(cmd[2])
            elif kind == Cmd.IDLE_START:
                self._start_timer(("idle", cmd[1]), cmd[2])
            elif kind == Cmd.IDLE_CANCEL:
                handle = self._timers.pop(("idle", cmd[1]), None)
                if handle is not None:
                    handle.cancel()
            elif kind == Cmd.INVENTORY:
                self._answer_inventory(token, cmd[1])
            elif kind == Cmd.SETTLED:
                waiting = self._settling.pop(cmd[1], None)
                if waiting is not None and not waiting.done():
                    waiting.set_result(None)
            elif kind == Cmd.DONE:
                keep = set(cmd[1])
                for cid in [cid for cid in self._routes if cid not in keep]:
                    self._unroute(cid)

    async def settled(self, socket: str, timeout: float = 5.0) -> None:
        """Wait until the leader decided this socket's auth (its routes are then here).

        On one node that is immediate; here the decision takes a round trip through
        the leader. Gives up after `timeout` (no leader): the caller goes on anyway.
        """
        waiting = self._settling.get(socket)
        if waiting is not None:
            with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(asyncio.shield(waiting), timeout)

    def _track(self, socket: str, type_: str, location: int | None) -> None:
        """Remember what a re-announce must not repeat (see `Leader._known`)."""
        if type_ == "connect_queue" and location is not None:
            self._locations[socket] = location
        elif type_ in ("connect_success", "disconnected"):
            self._locations.pop(socket, None)
        elif type_ == "ready":
            self._ready.add(socket)
        elif type_ in ("unready", "kickout"):
            self._ready.discard(socket)

    def _apply_route(self, cmd: list[Any]) -> None:
        _, cid, uid, usock, unode, wid, wsock, wnode = cmd
        self._route(c.Route(cid, uid, usock, wid, wsock))  # unroutes the old pairing first
        for socket, node in ((usock, unode), (wsock, wnode)):
            if socket and node and node != self.node:
                ref = self._remote.get(socket)
                if ref is None:
                    self._remote[socket] = [node, 1]
                else:
                    ref[0] = node
                    ref[1] += 1

    def _unroute(self, conversation_id: str) -> None:
        entry = self._routes.get(conversation_id)
        if entry is not None:
            for socket in (entry.user_socket, entry.waiter_socket):
                ref = self._remote.get(socket) if socket else None
                if ref is not None:
                    ref[1] -= 1
                    if ref[1] <= 0:
                        del self._remote[socket]  # type: ignore[arg-type]
        super()._unroute(conversation_id)

    def inventory(self) -> list[list[Any]]:
        """This node's live authenticated sockets, for a new leader."""
        items: list[list[Any]] = []
        for conn in self.connections:
            account = conn.account
            if account is None or conn.closing is not None:
                continue
            profile = msgspec.to_builtins(account.profile())
            socket = conn.socket
            if conn.side == "user":
                route = self.route_of_user_socket(socket)
                peer = route.waiter_socket if route is not None else None
                items.append([socket, "u", profile, False, peer, self._locations.get(socket)])
            else:
                users = [r.user_socket for r in self.routes_of_waiter(socket) if r.user_socket]
                items.append([socket, "w", profile, socket in self._ready, users, None])
        return items

    def _answer_inventory(self, token: int, leader_node: str) -> None:
        items = self.inventory()
        if leader_node == self.node:
            leader = self.leader
            if leader is not None and leader.token == token:
                leader.on_inventory(self.node, items)
            return
        self.outbox(leader_node).push(inventory_message(token, self.node, items))


class ClusterHistory(History):
    """History for a cluster node: a resume replays once the leader has placed the socket."""

    def __init__(self, runtime: ClusterRuntime, store: Store) -> None:
        super().__init__(runtime, store)
        self._cluster = runtime

    async def replay(self, conn: Connection, last_id: str) -> None:
        await self._cluster.settled(conn.socket)
        await super().replay(conn, last_id)


def cluster_status_endpoint(runtime: ClusterRuntime):  # type: ignore[no-untyped-def]
    """GET /v1/ws/status on a cluster node: the whole cluster, [ext] per node."""

    settings = runtime.settings

    async def status(request: Request) -> JSONResponse:
        headers = cors_headers(request.headers.get("origin"), request.headers.get("host"), settings)
        data = await runtime.cluster_status()
        return JSONResponse({"status": 1, "message": "", "data": data}, headers=headers)

    return status


__all__ = ["ClusterHistory", "ClusterRuntime", "cluster_status_endpoint"]
