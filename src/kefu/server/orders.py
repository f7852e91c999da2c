"""Orders: what the desk tells the node holding a socket to do.

The desk decides; the sockets live on nodes. On one node the desk hands
each order to `Node.apply` directly. In a cluster the leader's desk sends a
node's orders to it in one message per batch, as these msgspec structs, and
orders for the leader's own sockets are applied without being encoded at all.
"""

from __future__ import annotations

from typing import Any

import msgspec
from msgspec import Struct


class Deliver(Struct, tag="deliver", array_like=True):
    """Push an encoded server frame to a socket. `kind` is its type (a node tracks some)."""

    socket: str
    frame: bytes
    kind: str
    location: int | None = None  # the queue place a `connect_queue` tells


class CloseSocket(Struct, tag="close", array_like=True):
    socket: str
    code: int


class Pair(Struct, tag="pair", array_like=True):
    """Route a conversation between two sockets (and the nodes holding them)."""

    conversation_id: str
    user_id: str
    user_socket: str | None
    waiter_id: str
    waiter_socket: str | None
    user_node: str | None = None
    waiter_node: str | None = None


class Unpair(Struct, tag="unpair", array_like=True):
    conversation_id: str


class IdleAt(Struct, tag="idle", array_like=True):
    """Check a user socket for idleness at `at` (epoch seconds); None cancels the check."""

    socket: str
    at: float | None


class Settled(Struct, tag="settled", array_like=True):
    """The socket's `auth` has been decided: its routes have been sent (a cluster)."""

    socket: str


class AskInventory(Struct, tag="ask", array_like=True):
    """A new leader asks a node for its live sockets (`Inventory`)."""

    leader: str


class Rebuilt(Struct, tag="rebuilt", array_like=True):
    """A new leader re-announced everything: routes of other conversations are stale."""

    conversations: list[str]


class ForgetAccount(Struct, tag="forget", array_like=True):
    """Drop the node's cached copy of an account (it changed): every node gets it.

    `hang_up`: close the account's sockets on the node too (with 4403), also
    one whose `auth` the desk has not seen yet.
    """

    account_id: str
    hang_up: bool = False


Order = (
    Deliver
    | CloseSocket
    | Pair
    | Unpair
    | IdleAt
    | Settled
    | AskInventory
    | Rebuilt
    | ForgetAccount
)

_encode = msgspec.msgpack.Encoder().encode
_decode_orders = msgspec.msgpack.Decoder(list[Order])


def encode_orders(orders: list[Order]) -> bytes:
    return _encode(orders)


def decode_orders(data: bytes | memoryview) -> list[Order]:
    return _decode_orders.decode(data)


def raw(value: Any) -> bytes:
    """msgpack of any value (for the cluster's own messages)."""
    return _encode(value)
