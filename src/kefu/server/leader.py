"""The leader: the one node of a cluster that runs the switchboard.

`Leader` exists on a node only while it holds the lease (`ClusterRuntime`
creates it with the fencing token and stops it when the lease is lost). It:

1. rebuilds the switchboard from SQL (queue entries, open conversations:
   the same `QueuedRestored` / `ConversationRestored` events as one node at
   start), after flushing this node's own queued writes;
2. asks every live node for its live authenticated sockets and re-announces
   them (`UserAuthed` for all users first, then `WaiterAuthed`, then
   `WaiterReady` for waiters that were ready). Frames this produces that a
   client already has (its `connect_success`, its queue place, a waiter's
   `ready`, `new_connection` of a user it already serves) are not sent
   again: a failover is not visible to clients that kept their state;
3. reads the event stream from the last acked id, in order, and carries out
   the commands: frames, closes and idle timers go to the node holding the
   socket; `Route`/`Unroute` to every node; queue and conversation records
   into the store; grace timers run here.

Guarantees and limits: the stream is acked only after the store has
committed the writes of the events up to that point, so a leader that dies
loses no decided queue or conversation change; events after the last ack are
decided again by the next leader (at-least-once: a client may get a reply
twice, e.g. a second `connect_queue`). A socket that authenticated twice in
the switchboard's view (inventory and stream) is announced once. Nodes whose
heartbeat expired have their sockets treated as closed (resume grace
applies); a node that comes back is asked for its sockets again.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

from kefu.core import commands as c
from kefu.core import events as e
from kefu.core.errors import CoreError
from kefu.core.model import Profile, Role
from kefu.core.switchboard import Switchboard
from kefu.protocol import codes
from kefu.protocol.out import encode
from kefu.server.runtime import _STATUS
from kefu.server.wire import Cmd, commands_message, decode_event
from kefu.store.base import StoreError

if TYPE_CHECKING:
    from kefu.server.cluster import ClusterRuntime

log = logging.getLogger("kefu.leader")

STATUS_KEY = "status"
T = TypeVar("T")


class Leader:
    def __init__(self, runtime: ClusterRuntime, token: int) -> None:
        s = runtime.settings
        self.rt = runtime
        self.token = token
        self.node = runtime.node
        self.sb = Switchboard(
            capacity=s.max_users_per_waiter,
            idle_timeout=s.idle_timeout,
            idle_grace=s.idle_grace,
            resume_grace=s.resume_grace,
            new_id=runtime.ids,
        )
        self.socket_nodes: dict[str, str] = {}  # every socket the switchboard may address
        self.live: set[str] = set(runtime.live) | {self.node}
        self.nodes: set[str] = set(self.live)  # where Route/Unroute go
        self.inventoried: set[str] = set()
        self.pos = "0"
        self.started = time.monotonic()
        self.ready_at: float | None = None  # when the rebuild was done
        self._asked: dict[str, float] = {}
        self._prior_peer: dict[str, str | None] = {}  # user socket -> waiter socket it had
        self._prior_users: dict[str, set[str]] = {}  # waiter socket -> user sockets it had
        self._prior_loc: dict[str, int] = {}  # user socket -> queue place it had
        self._pending: dict[str, list[list[Any]]] = {}
        self._needs_commit = False  # the pending commands announce a conversation not yet stored
        self._held: deque[tuple[bool, dict[str, list[list[Any]]]]] = deque()
        self._held_wake = asyncio.Event()
        self._timers: dict[tuple[str, str], asyncio.TimerHandle] = {}
        # inventories are collected (not fed) until the rebuild from SQL is done
        self._gathering: dict[str, list[list[Any]]] | None = {}
        self._expect: set[str] = set()
        self._gathered = asyncio.Event()
        self._ack_wake = asyncio.Event()
        self._status_dirty = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._stopped = False

    # -- the leader's life -------------------------------------------------------------
    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        self._tasks.append(loop.create_task(self._release(), name="kefu-leader-out"))
        await self._restore()
        await self._gather()
        self.pos = await self._retry(self.rt.broker.acked_events)
        self._tasks += [
            loop.create_task(self._acker(), name="kefu-leader-ack"),
            loop.create_task(self._status_loop(), name="kefu-leader-status"),
        ]
        self.ready_at = time.monotonic()
        log.warning(
            "node %s leads (token %d): rebuilt in %.2fs, %d nodes, %d queued, %d conversations",
            self.node,
            self.token,
            self.ready_at - self.started,
            len(self.inventoried),
            len(self.sb.queue()),
            len(self.sb.conversations()),
        )
        await self._read_loop()

    def stop(self) -> None:
        self._stopped = True
        for task in self._tasks:
            task.cancel()
        for handle in self._timers.values():
            handle.cancel()
        self._timers.clear()

    async def _retry(self, fn: Callable[[], Awaitable[T]]) -> T:
        delay = 0.05
        while True:
            try:
                return await fn()
            except Exception as exc:  # broker or database down: keep the lease, try again
                log.warning("leader %s waiting: %s", self.node, exc)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 1.0)

    async def _restore(self) -> None:
        async def load() -> Any:
            await self.rt.store.flush()  # this node's own queued records first
            return await self.rt.store.load_open_state()

        state = await self._retry(load)
        for conv, user, waiter in state.conversations:
            self.handle(e.ConversationRestored(conv.id, user, waiter, conv.opened, conv.queued))
        for entry in state.queue:
            self.handle(e.QueuedRestored(entry.user, entry.queued_at))
        self.flush()

    async def _gather(self) -> None:
        """Ask every live node for its sockets; re-announce them all at once."""
        live = set(await self._retry(self.rt.broker.live_nodes)) | {self.node}
        self.live = live
        # nodes this node saw alive before are waited for too (up to the timeout): after a
        # Redis restart their heartbeats are not back yet, but they are about to answer
        self.nodes |= live
        self._expect = live | self.nodes
        assert self._gathering is not None
        for node in self._expect - set(self._gathering):
            self._ask(node)
        self.flush()
        if self._expect <= set(self._gathering):
            self._gathered.set()
        wait = min(2.0, max(0.2, self.rt.settings.lease_ttl / 2))
        try:
            await asyncio.wait_for(self._gathered.wait(), wait)
        except TimeoutError:
            missing = sorted(self._expect - set(self._gathering))
            log.warning("leader %s: no inventory yet from %s; going on", self.node, missing)
        gathered, self._gathering = self._gathering, None
        self._feed(gathered)

    # -- inventories -----------------------------------------------------------------------
    def _ask(self, node: str) -> None:
        self._asked[node] = time.monotonic()
        self._to(node, [Cmd.INVENTORY, self.node])

    def on_inventory(self, node: str, items: list[list[Any]]) -> None:
        if self._stopped:
            return
        self._asked.pop(node, None)
        self.nodes.add(node)
        for item in items:
            socket, kind, _profile, _ready, peer, loc = item
            if kind == "u":
                self._prior_peer[socket] = peer
                if loc is not None:
                    self._prior_loc[socket] = loc
            else:
                self._prior_users[socket] = set(peer or ())
        if self._gathering is not None:
            self._gathering[node] = items
            if self._expect <= set(self._gathering):
                self._gathered.set()
            return
        self._feed({node: items})

    def _feed(self, inventories: dict[str, list[list[Any]]]) -> None:
        items = [(node, item) for node, its in inventories.items() for item in its]
        for kind in ("u", "w"):
            for node, item in items:
                if item[1] == kind:
                    profile = Profile(**item[2])
                    event: e.UserAuthed | e.WaiterAuthed = (
                        e.UserAuthed(item[0], profile)
                        if kind == "u"
                        else e.WaiterAuthed(item[0], profile)
                    )
                    self._announce(node, event)
        for node, item in items:
            if item[1] == "w" and item[3] and self.sb.account_of(item[0]) is not None:
                self.handle(e.WaiterReady(item[0]), node, rebuild=True)
        keep = sorted(self.sb.conversations())
        for node in inventories:
            self.inventoried.add(node)
            self._to(node, [Cmd.DONE, keep])
        self.flush()

    def _announce(self, node: str, event: e.UserAuthed | e.WaiterAuthed) -> None:
        if self.sb.account_of(event.socket) is not None:
            return  # the stream announced it already
        self.socket_nodes[event.socket] = node
        self.handle(event, node, rebuild=True)

    def check_nodes(self, live: set[str]) -> None:
        """Called with the live nodes after each heartbeat: drop the dead, ask the new."""
        if self._stopped or self._gathering is not None:
            return
        live = live | {self.node}
        self.live = live
        self.nodes |= live
        dead = {n for n in self.nodes if n not in live}
        if dead:
            gone = [s for s, n in self.socket_nodes.items() if n in dead]
            log.warning(
                "leader: nodes %s stopped beating; %d sockets dropped", sorted(dead), len(gone)
            )
            for socket in gone:
                self.handle(e.SocketClosed(socket))
                self.socket_nodes.pop(socket, None)
            self.nodes -= dead
            self.inventoried -= dead
        now = time.monotonic()
        for node in live - self.inventoried:
            if now - self._asked.get(node, 0.0) > 2.0:
                self._ask(node)
        self.flush()

    # -- the event stream -------------------------------------------------------------------
    async def _read_loop(self) -> None:
        broker = self.rt.broker
        delay = 0.05
        while not self._stopped:
            try:
                entries = await broker.read_events(self.pos, block_ms=1000, count=512)
            except Exception as exc:
                log.warning("leader %s: reading events failed: %s", self.node, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 1.0)
                continue
            delay = 0.05
            if not entries:
                continue
            for _eid, data in entries:
                try:
                    origin, op_id, event = decode_event(data)
                except Exception:
                    log.exception("undecodable event dropped")
                    continue
                self._on_event(origin, op_id, event)
            self.pos = entries[-1][0]
            self.flush()
            self._ack_wake.set()

    def _on_event(self, origin: str, op_id: str | None, event: e.Event) -> None:
        self.nodes.add(origin)
        socket: str | None = getattr(event, "socket", None)
        if isinstance(event, e.UserAuthed | e.WaiterAuthed):
            if self.sb.account_of(event.socket) is None:  # else announced by the inventory
                self.socket_nodes[event.socket] = origin
                self.handle(event, origin, op_id)
            self._to(origin, [Cmd.SETTLED, event.socket])
            return
        elif socket is not None and not isinstance(event, e.SocketClosed):
            self.socket_nodes.setdefault(socket, origin)
        self.handle(event, origin, op_id)
        if isinstance(event, e.SocketClosed):
            self.socket_nodes.pop(event.socket, None)
            self._prior_peer.pop(event.socket, None)
            self._prior_users.pop(event.socket, None)
            self._prior_loc.pop(event.socket, None)

    async def _acker(self) -> None:
        """Ack the stream once the store has committed what the events decided."""
        while True:
            await self._ack_wake.wait()
            self._ack_wake.clear()
            target = self.pos
            try:
                await self.rt.store.flush()
                await self.rt.broker.ack_events(target)
            except (StoreError, Exception) as exc:
                log.warning("leader %s: ack failed: %s", self.node, exc)
                self._ack_wake.set()
                await asyncio.sleep(0.5)
            await asyncio.sleep(0.02)

    # -- deciding and carrying out ----------------------------------------------------------------
    def handle(
        self,
        event: e.Event,
        origin: str | None = None,
        op_id: str | None = None,
        *,
        rebuild: bool = False,
    ) -> None:
        socket: str | None = getattr(event, "socket", None)
        try:
            commands = self.sb.handle(event, time.time())
        except CoreError as exc:
            if socket is not None:
                status = _STATUS.get(type(exc), codes.NO_PERMISSION)
                payload = {"message": str(exc), "status": status, "data": None}
                self._send(socket, "error", None, payload, op_id, time.time())
            return
        except Exception:  # a bug: skip the event rather than fail on it forever
            log.exception("switchboard failed on %r; event skipped", event)
            return
        self.dispatch(commands, (socket, op_id) if op_id is not None else None, rebuild)
        self._status_dirty.set()

    def dispatch(
        self,
        commands: list[c.Command],
        reply: tuple[str | None, str] | None = None,
        rebuild: bool = False,
    ) -> None:
        now = time.time()
        nodes = self.socket_nodes
        for cmd in commands:
            match cmd:
                case c.Send(socket, type_, frm, payload):
                    op_id = None
                    if reply is not None and socket == reply[0]:
                        op_id, reply = reply[1], None
                    if rebuild and self._known(socket, type_, frm, payload):
                        continue
                    self._send(socket, type_, frm, payload, op_id, now)
                case c.Close(socket, code):
                    node = nodes.get(socket)
                    if node is not None:
                        self._to(node, [Cmd.CLOSE, socket, code])
                case c.Enqueue() | c.Dequeue() | c.OpenConversation() | c.CloseConversation():
                    try:
                        self.rt.store.write(cmd)
                    except StoreError as exc:  # shutting down
                        log.error("lifecycle record not stored: %r: %s", cmd, exc)
                    if isinstance(cmd, c.OpenConversation):
                        self._needs_commit = True
                case c.Route(cid, uid, us, wid, ws):
                    route = [
                        Cmd.ROUTE,
                        cid,
                        uid,
                        us,
                        nodes.get(us) if us else None,
                        wid,
                        ws,
                        nodes.get(ws) if ws else None,
                    ]
                    for node in self.nodes:
                        self._to(node, route)
                case c.Unroute(cid):
                    for node in self.nodes:
                        self._to(node, [Cmd.UNROUTE, cid])
                case c.StartTimer(key, at):
                    if key[0] == "idle":
                        node = nodes.get(key[1])
                        if node is not None:
                            self._to(node, [Cmd.IDLE_START, key[1], at])
                    else:
                        self._start_timer(key, at)
                case c.CancelTimer(key):
                    if key[0] == "idle":
                        node = nodes.get(key[1])
                        if node is not None:
                            self._to(node, [Cmd.IDLE_CANCEL, key[1]])
                    else:
                        handle = self._timers.pop(key, None)
                        if handle is not None:
                            handle.cancel()

    def _known(self, socket: str, type_: str, frm: str | None, payload: Any) -> bool:
        """During a re-announce: does the client already have this frame's news?"""
        if type_ == "ready":
            return True
        if type_ == "connect_success":
            if socket not in self._prior_peer:
                return False
            had = self._prior_peer[socket]
            return had == frm or (frm is None and had is not None)
        if type_ == "new_connection" and isinstance(payload, dict) and payload.get("resumed"):
            return not frm or frm in self._prior_users.get(socket, ())
        if type_ == "connect_queue" and isinstance(payload, dict):
            return self._prior_loc.get(socket) == payload.get("location")
        return False

    def _send(
        self,
        socket: str,
        type_: str,
        frm: str | None,
        payload: Any,
        op_id: str | None,
        now: float,
    ) -> None:
        node = self.socket_nodes.get(socket)
        if node is None:
            return
        location = None
        if type_ == "connect_queue" and isinstance(payload, dict):
            location = payload.get("location")
        frame = encode(type_, socket, now, frm=frm, op_id=op_id, payload=payload)
        self._to(node, [Cmd.SEND, socket, type_, location, frame])

    def _to(self, node: str, cmd: list[Any]) -> None:
        pending = self._pending.get(node)
        if pending is None:
            self._pending[node] = [cmd]
        else:
            pending.append(cmd)

    def flush(self) -> None:
        """Send the commands decided so far: one message per node.

        Commands that announce a new conversation are held until the store has
        committed it (messages of the conversation, written by other nodes, need
        its row); later commands wait behind them, so the order is kept.
        """
        if self._stopped:
            self._pending.clear()
            return
        pending, self._pending = self._pending, {}
        needs, self._needs_commit = self._needs_commit, False
        if not pending:
            return
        if not needs and not self._held:
            self._send_now(pending)
            return
        self._held.append((needs, pending))
        self._held_wake.set()

    async def _release(self) -> None:
        held = self._held
        while True:
            if not held:
                self._held_wake.clear()
                await self._held_wake.wait()
                continue
            needs, pending = held[0]
            if needs:
                try:
                    await self.rt.store.flush()
                except StoreError as exc:  # retried by the writer: wait for the commit
                    log.warning("leader %s: waiting for the store: %s", self.node, exc)
                    await asyncio.sleep(0.2)
                    continue
            held.popleft()
            if not self._stopped:
                self._send_now(pending)

    def _send_now(self, pending: dict[str, list[list[Any]]]) -> None:
        for node, cmds in pending.items():
            if node == self.node:
                self.rt.apply_commands(self.token, cmds)
            else:
                self.rt.outbox(node).push(commands_message(self.token, cmds))

    # -- timers (grace) ----------------------------------------------------------------------------
    def _start_timer(self, key: tuple[str, str], at: float) -> None:
        old = self._timers.pop(key, None)
        if old is not None:
            old.cancel()
        delay = max(0.0, at - time.time())
        self._timers[key] = asyncio.get_running_loop().call_later(delay, self._fire, key)

    def _fire(self, key: tuple[str, str]) -> None:
        self._timers.pop(key, None)
        if self._stopped:
            return
        try:
            self.handle(e.TimerFired(key))
            self.flush()
        except Exception:
            log.exception("leader timer %s failed", key)

    # -- status ---------------------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        s = self.sb.status()
        nodes: dict[str, dict[str, Any]] = {
            n: {"online_user_num": 0, "online_waiter_num": 0, "leader": n == self.node}
            for n in sorted(self.live)
        }
        for socket, node in self.socket_nodes.items():
            owner = self.sb.account_of(socket)
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
            "leader": self.node,
            "nodes": nodes,
        }

    async def _status_loop(self) -> None:
        interval = self.rt.settings.node_ttl / 3
        ttl = max(10.0, 3 * self.rt.settings.node_ttl)
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._status_dirty.wait(), interval)
            self._status_dirty.clear()
            data = json.dumps(self.snapshot(), separators=(",", ":")).encode()
            try:
                await self.rt.broker.put(STATUS_KEY, data, ttl)
            except Exception as exc:
                log.warning("leader %s: status not published: %s", self.node, exc)
                self._status_dirty.set()
                await asyncio.sleep(0.5)
            await asyncio.sleep(0.05)
