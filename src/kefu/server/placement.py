"""Placement: where a socket lives, and how the desk's orders about it reach it.

The desk decides for every socket of the deployment; a socket lives on one
node. `Placement` is the only thing that differs between one node and a
cluster: `LocalPlacement` applies each order to this process's `Node` at
once; the cluster leader's `ClusterPlacement` (`server/cluster/placement.py`)
batches them per node and sends them there.
"""

from __future__ import annotations

from typing import Protocol

from kefu.server.node import Node
from kefu.server.orders import CloseSocket, Deliver, ForgetAccount, IdleAt, Pair, Unpair


class Placement(Protocol):
    def reaches(self, socket: str) -> bool:
        """True if some node holds `socket` (else a frame for it need not be made)."""

    def deliver(self, order: Deliver) -> None: ...
    def close(self, order: CloseSocket) -> None: ...
    def idle(self, order: IdleAt) -> None: ...

    def pair(self, order: Pair) -> None:
        """Every node learns the route (its sockets' peers may be anywhere)."""

    def unpair(self, order: Unpair) -> None: ...

    def broadcast(self, order: ForgetAccount) -> None:
        """Every node carries it out (not only those holding a socket)."""

    def after_commit(self) -> None:
        """Orders given from now on wait until what was written so far is committed.

        A new conversation's row must be committed before other nodes write
        its messages; on one node the writer's single FIFO keeps that order.
        """


class LocalPlacement:
    """One node: every socket is this process's; orders apply at once."""

    def __init__(self, node: Node) -> None:
        self._node = node

    def reaches(self, socket: str) -> bool:
        return self._node.reaches(socket)

    def deliver(self, order: Deliver) -> None:
        self._node.apply(order)

    def close(self, order: CloseSocket) -> None:
        self._node.apply(order)

    def idle(self, order: IdleAt) -> None:
        self._node.apply(order)

    def pair(self, order: Pair) -> None:
        self._node.apply(order)

    def unpair(self, order: Unpair) -> None:
        self._node.apply(order)

    def broadcast(self, order: ForgetAccount) -> None:
        self._node.apply(order)

    def after_commit(self) -> None:
        pass  # one writer FIFO: the conversation's row goes before its messages
