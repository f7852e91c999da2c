"""The leader's placement: which node holds each socket, and its orders sent there in batches.

Orders are collected per node while the leader handles a batch of events,
then `flush` sends each node's list as one message (`wire.Orders`, with the
leader's fencing token); the leader's own node gets its list as objects,
never encoded. Orders given after a new conversation was written
(`after_commit`) wait until the store has committed it, because other nodes
write that conversation's messages, which need its row; orders flushed
after them wait behind them, so each node sees them in the order given.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from typing import Protocol

from kefu.server.orders import (
    AskInventory,
    CloseSocket,
    Deliver,
    ForgetAccount,
    IdleAt,
    Order,
    Pair,
    Rebuilt,
    Settled,
    Unpair,
)
from kefu.store.base import Store, StoreError

log = logging.getLogger("kefu.leader")


class Nodes(Protocol):
    """How the leader's orders leave it: to its own node directly, to others over the broker."""

    def apply_local(self, token: int, orders: list[Order]) -> None: ...
    def send_orders(self, node: str, token: int, orders: list[Order]) -> None: ...


class ClusterPlacement:
    def __init__(self, node: str, token: int, store: Store, nodes: Nodes) -> None:
        self.node = node
        self.token = token
        self.socket_nodes: dict[str, str] = {}  # every socket the switchboard may address
        self.nodes: set[str] = {node}  # where routes go
        self._store = store
        self._out = nodes
        self._pending: dict[str, list[Order]] = {}
        self._needs_commit = False
        self._held: deque[tuple[bool, dict[str, list[Order]]]] = deque()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopped = False

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._release(), name="kefu-leader-out")

    async def stop(self) -> None:
        self._stopped = True
        self._pending.clear()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    # -- the Placement protocol -------------------------------------------------------------
    def reaches(self, socket: str) -> bool:
        return socket in self.socket_nodes

    def deliver(self, order: Deliver) -> None:
        self._to_holder(order.socket, order)

    def close(self, order: CloseSocket) -> None:
        self._to_holder(order.socket, order)

    def idle(self, order: IdleAt) -> None:
        self._to_holder(order.socket, order)

    def pair(self, order: Pair) -> None:
        nodes = self.socket_nodes
        if order.user_socket is not None:
            order.user_node = nodes.get(order.user_socket)
        if order.waiter_socket is not None:
            order.waiter_node = nodes.get(order.waiter_socket)
        for node in self.nodes:
            self._to(node, order)

    def unpair(self, order: Unpair) -> None:
        for node in self.nodes:
            self._to(node, order)

    def broadcast(self, order: ForgetAccount) -> None:
        for node in self.nodes:
            self._to(node, order)

    def after_commit(self) -> None:
        self._needs_commit = True

    # -- the leader's own orders --------------------------------------------------------------
    def settled(self, socket: str) -> None:
        self._to_holder(socket, Settled(socket))

    def ask_inventory(self, node: str) -> None:
        self._to(node, AskInventory(self.node))

    def rebuilt(self, node: str, conversations: list[str]) -> None:
        self._to(node, Rebuilt(conversations))

    def _to_holder(self, socket: str, order: Order) -> None:
        node = self.socket_nodes.get(socket)
        if node is not None:
            self._to(node, order)

    def _to(self, node: str, order: Order) -> None:
        pending = self._pending.get(node)
        if pending is None:
            self._pending[node] = [order]
        else:
            pending.append(order)

    # -- sending -----------------------------------------------------------------------------
    def flush(self) -> None:
        """Send the orders given so far: one message per node (or hold them, see above)."""
        if self._stopped:
            self._pending.clear()
            return
        pending, self._pending = self._pending, {}
        needs, self._needs_commit = self._needs_commit, False
        if not pending:
            return
        if not needs and not self._held:
            self._send(pending)
            return
        self._held.append((needs, pending))
        self._wake.set()

    async def _release(self) -> None:
        held = self._held
        while True:
            if not held:
                self._wake.clear()
                await self._wake.wait()
                continue
            needs, pending = held[0]
            if needs:
                try:
                    await self._store.flush()
                except StoreError as exc:  # retried by the writer: wait for the commit
                    log.warning("leader %s: waiting for the store: %s", self.node, exc)
                    await asyncio.sleep(0.2)
                    continue
            held.popleft()
            if not self._stopped:
                self._send(pending)

    def _send(self, pending: dict[str, list[Order]]) -> None:
        for node, orders in pending.items():
            if node == self.node:
                self._out.apply_local(self.token, orders)
            else:
                self._out.send_orders(node, self.token, orders)
