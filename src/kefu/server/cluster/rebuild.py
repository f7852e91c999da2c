"""A new leader's rebuild: every live socket of the cluster re-announced to its desk.

After the desk is restored from SQL (queue entries, open conversations),
the leader asks every live node for its live authenticated sockets
(`AskInventory` -> `Inventory`), then announces them all at once: every
user (`UserAuthed`) first, then every waiter (`WaiterAuthed`), then
`WaiterReady` for waiters that were ready. Frames this produces that a
client already has (its `connect_success`, its queue place, a waiter's
`ready`, `new_connection` of a user it already serves) are not sent again
(`known`): a failover is not visible to clients that kept their state.
Each node is then told which conversations exist (`Rebuilt`), so it drops
routes of conversations that ended while nobody led. A node that joins
later is asked and announced the same way.
"""

from __future__ import annotations

import asyncio
import logging
import time

from kefu.core import commands as c
from kefu.core import events as e
from kefu.core.model import Role
from kefu.server.cluster.placement import ClusterPlacement
from kefu.server.cluster.wire import InventoryItem
from kefu.server.desk import Desk

log = logging.getLogger("kefu.leader")

ASK_AGAIN_AFTER = 2.0  # seconds before a node that has not answered is asked again


class Rebuild:
    def __init__(self, desk: Desk, placement: ClusterPlacement, wait: float) -> None:
        self._desk = desk
        self._placement = placement
        self._wait = wait  # how long the first gathering waits for every node's answer
        self.inventoried: set[str] = set()  # nodes whose sockets are announced
        self._asked: dict[str, float] = {}
        self._prior_peer: dict[str, str | None] = {}  # user socket -> waiter socket it had
        self._prior_users: dict[str, set[str]] = {}  # waiter socket -> user sockets it had
        self._prior_loc: dict[str, int] = {}  # user socket -> queue place it had
        # inventories are collected (not fed) until the first gathering is over
        self._gathering: dict[str, list[InventoryItem]] | None = {}
        self._expect: set[str] = set()
        self._gathered = asyncio.Event()

    @property
    def gathering(self) -> bool:
        return self._gathering is not None

    async def gather(self, nodes: set[str]) -> None:
        """Ask `nodes` for their sockets; announce them all once every one answered (or later)."""
        placement = self._placement
        placement.nodes |= nodes
        self._expect = set(nodes)
        assert self._gathering is not None
        for node in self._expect - set(self._gathering):
            self.ask(node)
        placement.flush()
        if self._expect <= set(self._gathering):
            self._gathered.set()
        try:
            async with asyncio.timeout(self._wait):
                await self._gathered.wait()
        except TimeoutError:
            missing = sorted(self._expect - set(self._gathering))
            log.warning("leader %s: no inventory yet from %s; going on", placement.node, missing)
        gathered, self._gathering = self._gathering, None
        self._feed(gathered)

    def ask(self, node: str) -> None:
        self._asked[node] = time.monotonic()
        self._placement.ask_inventory(node)

    def ask_unknown(self, live: set[str]) -> None:
        """Ask live nodes whose sockets are not announced yet (again, if they did not answer)."""
        now = time.monotonic()
        for node in live - self.inventoried:
            if now - self._asked.get(node, 0.0) > ASK_AGAIN_AFTER:
                self.ask(node)

    def on_inventory(self, node: str, items: list[InventoryItem]) -> None:
        self._asked.pop(node, None)
        self._placement.nodes.add(node)
        for item in items:
            if item.role is Role.USER:
                self._prior_peer[item.socket] = item.peers[0] if item.peers else None
                if item.location is not None:
                    self._prior_loc[item.socket] = item.location
            else:
                self._prior_users[item.socket] = set(item.peers)
        if self._gathering is not None:
            self._gathering[node] = items
            if self._expect <= set(self._gathering):
                self._gathered.set()
            return
        self._feed({node: items})

    def forget(self, socket: str) -> None:
        self._prior_peer.pop(socket, None)
        self._prior_users.pop(socket, None)
        self._prior_loc.pop(socket, None)

    def _feed(self, inventories: dict[str, list[InventoryItem]]) -> None:
        desk, placement = self._desk, self._placement
        switchboard = desk.switchboard
        items = [(node, item) for node, its in inventories.items() for item in its]
        for role in (Role.USER, Role.WAITER):
            for node, item in items:
                if item.role is not role or switchboard.account_of(item.socket) is not None:
                    continue  # the event stream announced it already
                placement.socket_nodes[item.socket] = node
                event: e.UserAuthed | e.WaiterAuthed = (
                    e.UserAuthed(item.socket, item.profile)
                    if role is Role.USER
                    else e.WaiterAuthed(item.socket, item.profile)
                )
                desk.handle(event, skip=self.known)
        for _node, item in items:
            announced = switchboard.account_of(item.socket) is not None
            if item.role is Role.WAITER and item.ready and announced:
                desk.handle(e.WaiterReady(item.socket), skip=self.known)
        keep = sorted(switchboard.conversations())
        for node in inventories:
            self.inventoried.add(node)
            placement.rebuilt(node, keep)
        placement.flush()

    def known(self, send: c.Send) -> bool:
        """During a re-announce: does the client already have this frame's news?"""
        socket, type_, frm, payload = send.socket, send.type, send.frm, send.payload
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
