"""Who talks to whom: the routes of the message path, kept up to date by the desk.

A message goes from socket to store to socket without asking the
switchboard: the gateway finds the conversation of a user socket, or
checks that a waiter's `to` is one of its users, here. The desk sets a
route when a conversation opens or a socket comes back (`Route`), and drops
it when the conversation ends (`Unroute`).

In a cluster a route also names the node that holds each socket, so that a
delivery to a socket on another node goes straight to that node.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class RouteEntry:
    conversation_id: str
    user_id: str
    user_socket: str | None  # the last known socket; delivery skips it if it is gone
    waiter_id: str
    waiter_socket: str | None
    user_node: str | None = None  # the node holding user_socket (a cluster), if known
    waiter_node: str | None = None


@dataclass(slots=True)
class _NodeRef:
    node: str
    routes: int  # routes naming the socket: forgotten when none is left


class RouteTable:
    """The open conversations' routes on this node, by conversation and by socket."""

    def __init__(self) -> None:
        self._by_conversation: dict[str, RouteEntry] = {}
        self._by_user_socket: dict[str, RouteEntry] = {}
        # a waiter's socket -> its routes by conversation (a waiter resuming after a restart must
        # not scan every conversation: thousands of them come back at once)
        self._by_waiter_socket: dict[str, dict[str, RouteEntry]] = {}
        self._nodes: dict[str, _NodeRef] = {}  # a socket on another node -> that node

    def put(self, entry: RouteEntry) -> None:
        """Route a conversation, replacing its earlier route."""
        self.drop(entry.conversation_id)
        self._by_conversation[entry.conversation_id] = entry
        if entry.user_socket is not None:
            self._by_user_socket[entry.user_socket] = entry
        if entry.waiter_socket is not None:
            by_id = self._by_waiter_socket.setdefault(entry.waiter_socket, {})
            by_id[entry.conversation_id] = entry
        for socket, node in _placed(entry):
            ref = self._nodes.get(socket)
            if ref is None:
                self._nodes[socket] = _NodeRef(node, 1)
            else:
                ref.node = node
                ref.routes += 1

    def drop(self, conversation_id: str) -> None:
        entry = self._by_conversation.pop(conversation_id, None)
        if entry is None:
            return
        socket = entry.user_socket
        if socket is not None and self._by_user_socket.get(socket) is entry:
            del self._by_user_socket[socket]
        waiter = entry.waiter_socket
        if waiter is not None:
            by_id = self._by_waiter_socket.get(waiter)
            if by_id is not None and by_id.pop(conversation_id, None) is not None and not by_id:
                del self._by_waiter_socket[waiter]
        for sock, _node in _placed(entry):
            ref = self._nodes.get(sock)
            if ref is not None:
                ref.routes -= 1
                if ref.routes <= 0:
                    del self._nodes[sock]

    def keep_only(self, conversation_ids: set[str]) -> None:
        """Drop every route but those of `conversation_ids` (after a new leader's rebuild)."""
        for cid in [cid for cid in self._by_conversation if cid not in conversation_ids]:
            self.drop(cid)

    def get(self, conversation_id: str) -> RouteEntry | None:
        return self._by_conversation.get(conversation_id)

    def of_user_socket(self, socket: str) -> RouteEntry | None:
        return self._by_user_socket.get(socket)

    def of_waiter_socket(self, socket: str) -> list[RouteEntry]:
        return list(self._by_waiter_socket.get(socket, {}).values())

    def node_of(self, socket: str) -> str | None:
        """The node holding `socket`, as the routes naming it say (a cluster)."""
        ref = self._nodes.get(socket)
        return ref.node if ref is not None else None


def _placed(entry: RouteEntry) -> list[tuple[str, str]]:
    """(socket, node) of each side of `entry` whose node is known."""
    sides = ((entry.user_socket, entry.user_node), (entry.waiter_socket, entry.waiter_node))
    return [(sock, node) for sock, node in sides if sock is not None and node is not None]
