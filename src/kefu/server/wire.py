"""What cluster nodes say to each other over the broker (msgpack via msgspec).

Node channel messages start with one kind byte:

* `F` + len(socket) byte + socket + frame: an encoded server frame for a local
  socket (the message path, node to node; never through the leader);
* `C` + msgpack [token, [command, ...]]: commands of the leader holding
  fencing token `token` (see `Cmd`);
* `V` + msgpack [token, node, [item, ...]]: a node's live sockets, the answer
  to an inventory request (`Cmd.INVENTORY`).

Stream entries (node -> leader) are msgpack [origin node, op_id, event type
name, event fields]; events are the core's dataclasses.
"""

from __future__ import annotations

from typing import Any

import msgspec

from kefu.core import events as e

FRAME = b"F"
COMMANDS = b"C"
INVENTORY = b"V"

_encode = msgspec.msgpack.Encoder().encode
_decode = msgspec.msgpack.Decoder().decode

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
    )
}


class Cmd:
    """First element of each leader command (a list)."""

    SEND = "S"  # [S, socket, type, queue location or None, encoded frame]
    CLOSE = "X"  # [X, socket, code]
    ROUTE = "R"  # [R, cid, user_id, user_socket, user_node, waiter_id, waiter_socket, waiter_node]
    UNROUTE = "U"  # [U, cid]
    IDLE_START = "T"  # [T, socket, at]
    IDLE_CANCEL = "t"  # [t, socket]
    INVENTORY = "I"  # [I, leader node]: answer with INVENTORY; routes not confirmed go at DONE
    DONE = "D"  # [D, open conversation ids]: re-announce done; drop routes of other ones
    SETTLED = "A"  # [A, socket]: the socket's auth was decided (its routes are here)


# inventory item: [socket, "u" | "w", profile dict, ready, peer(s), queue location]


def encode_event(origin: str, op_id: str | None, event: e.Event) -> bytes:
    return _encode([origin, op_id, type(event).__name__, event])


def decode_event(data: bytes) -> tuple[str, str | None, e.Event]:
    origin, op_id, name, fields = _decode(data)
    event: e.Event = msgspec.convert(fields, EVENT_TYPES[name])
    return origin, op_id, event


def frame_message(socket: str, frame: bytes) -> bytes:
    raw = socket.encode()
    return FRAME + bytes((len(raw),)) + raw + frame


def split_frame(data: bytes) -> tuple[str, bytes]:
    n = data[1]
    return data[2 : 2 + n].decode(), data[2 + n :]


def commands_message(token: int, commands: list[list[Any]]) -> bytes:
    return COMMANDS + _encode([token, commands])


def inventory_message(token: int, node: str, items: list[list[Any]]) -> bytes:
    return INVENTORY + _encode([token, node, items])


def decode_body(data: bytes) -> Any:
    return _decode(data[1:])
