"""What cluster nodes say to each other over the broker.

Node channel messages start with one kind byte:

* `F` + len(socket) byte + socket + frame: an encoded server frame for a
  socket of that node (the message path, node to node, never through the
  leader; kept this small because every cross-node message takes it);
* `O` + msgpack `Orders`: a batch of the leader's orders for that node,
  with the leader's fencing token (`kefu.server.orders`);
* `V` + msgpack `Inventory`: a node's live sockets, the answer to
  `AskInventory`.

Stream entries (node -> leader) are msgpack `Envelope`s: the origin node,
the op_id to echo, and the core event (a dataclass, converted by its name).
"""

from __future__ import annotations

from typing import Any

import msgspec
from msgspec import Struct

from kefu.core import events as e
from kefu.core.model import Profile, Role
from kefu.server.orders import Order

FRAME = b"F"
ORDERS = b"O"
INVENTORY = b"V"

EVENT_TYPES: dict[str, type] = {
    cls.__name__: cls
    for cls in (
        e.UserAuthed,
        e.UserConnect,
        e.UserDisconnect,
        e.UserRate,
        e.WaiterAuthed,
        e.WaiterReady,
        e.WaiterUnready,
        e.WaiterEnd,
        e.WaiterTransfer,
        e.SocketClosed,
        e.TimerFired,
        e.QueuedRestored,
        e.ConversationRestored,
        e.AccountChanged,
    )
}


class Orders(Struct, array_like=True):
    token: int  # the leader's fencing token: a node ignores orders of an older leader
    orders: list[Order]


class InventoryItem(Struct, array_like=True):
    """One live, authenticated socket of a node, as a new leader needs to know it."""

    socket: str
    role: Role
    profile: Profile
    ready: bool = False  # a waiter that was ready
    peers: list[str] = []  # a user's waiter socket, or a waiter's user sockets
    location: int | None = None  # a queued user's place, as last told


class Inventory(Struct, array_like=True):
    token: int
    node: str
    items: list[InventoryItem]


class Envelope(Struct, array_like=True):
    origin: str
    op_id: str | None
    name: str
    event: msgspec.Raw


_encode = msgspec.msgpack.Encoder().encode
_orders = msgspec.msgpack.Decoder(Orders)
_inventory = msgspec.msgpack.Decoder(Inventory)
_envelope = msgspec.msgpack.Decoder(Envelope)
_any = msgspec.msgpack.Decoder()


def encode_event(origin: str, op_id: str | None, event: e.Event) -> bytes:
    return _encode(Envelope(origin, op_id, type(event).__name__, msgspec.Raw(_encode(event))))


def decode_event(data: bytes) -> tuple[str, str | None, e.Event]:
    envelope = _envelope.decode(data)
    fields: Any = _any.decode(envelope.event)
    event: e.Event = msgspec.convert(fields, EVENT_TYPES[envelope.name])
    return envelope.origin, envelope.op_id, event


def frame_message(socket: str, frame: bytes) -> bytes:
    raw = socket.encode()
    return FRAME + bytes((len(raw),)) + raw + frame


def split_frame(data: bytes) -> tuple[str, bytes]:
    n = data[1]
    return data[2 : 2 + n].decode(), data[2 + n :]


def orders_message(token: int, orders: list[Order]) -> bytes:
    return ORDERS + _encode(Orders(token, orders))


def inventory_message(token: int, node: str, items: list[InventoryItem]) -> bytes:
    return INVENTORY + _encode(Inventory(token, node, items))


def decode_orders(data: bytes) -> Orders:
    return _orders.decode(memoryview(data)[1:])


def decode_inventory(data: bytes) -> Inventory:
    return _inventory.decode(memoryview(data)[1:])
