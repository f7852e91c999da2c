"""System (b): the Python wire limit. A minimal relay with kefu's topology on picows + uvloop.

It speaks just enough of kefu's frames for the load generator to drive it,
with no JSON parsing and no database:

* 1st frame on any socket (`auth`): answered with a fixed `auth_success`
  that carries the socket's id in `to`; the token is not checked.
* 2nd frame: on a waiter socket (`ready`) the waiter joins the ready list;
  on a user socket (`connect`) the user is paired with the oldest ready
  waiter (`connect_success` to the user, `new_connection` to the waiter),
  or waits for one.
* every later user frame is forwarded as raw bytes to the paired waiter,
  and a fixed `message_text_success` ack goes back to the user.

Run: python relay_limit.py --port 9001   (serves until SIGTERM/SIGINT)
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import signal
from collections import deque

import uvloop
from picows import WSFrame, WSListener, WSMsgType, WSTransport, WSUpgradeRequest, ws_create_server

ACK = b'{"type":"message_text_success","payload":null}'
TEXT = WSMsgType.TEXT
_ids = itertools.count(1)


def _frame(type_: str, to: str, frm: str | None = None) -> bytes:
    extra = f',"from":"{frm}"' if frm else ""
    return f'{{"type":"{type_}","to":"{to}"{extra}}}'.encode()


class Relay:
    """Pairing state shared by every socket of the server."""

    def __init__(self) -> None:
        self.ready: deque[Peer] = deque()
        self.waiting: deque[Peer] = deque()

    def pair(self, user: Peer, waiter: Peer) -> None:
        user.peer, waiter.peer = waiter, user
        user.transport.send(TEXT, _frame("connect_success", user.id, waiter.id))
        waiter.transport.send(TEXT, _frame("new_connection", waiter.id, user.id))

    def waiter_ready(self, waiter: Peer) -> None:
        while self.waiting:
            user = self.waiting.popleft()
            if not user.transport.is_disconnected:
                self.pair(user, waiter)
                return
        self.ready.append(waiter)

    def user_connect(self, user: Peer) -> None:
        while self.ready:
            waiter = self.ready.popleft()
            if not waiter.transport.is_disconnected:
                self.pair(user, waiter)
                return
        self.waiting.append(user)


class Peer(WSListener):
    __slots__ = ("frames", "id", "is_user", "peer", "relay", "transport")

    def __init__(self, relay: Relay, is_user: bool) -> None:
        self.relay = relay
        self.is_user = is_user
        self.id = f"s{next(_ids)}"
        self.frames = 0
        self.peer: Peer | None = None

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type is not TEXT:
            if frame.msg_type is WSMsgType.CLOSE:
                transport.send_close(frame.get_close_code())
                transport.disconnect()
            return
        peer = self.peer
        if peer is not None:  # the hot path: forward raw bytes, ack with a constant
            if self.is_user:
                peer.transport.send(TEXT, frame.get_payload_as_memoryview())
                transport.send(TEXT, ACK)
            return
        self.frames += 1
        if self.frames == 1:
            transport.send(TEXT, _frame("auth_success", self.id))
        elif self.frames == 2:
            if self.is_user:
                self.relay.user_connect(self)
            else:
                self.relay.waiter_ready(self)

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        peer, self.peer = self.peer, None
        if peer is not None:
            peer.peer = None


async def main(host: str, port: int) -> None:
    relay = Relay()

    def route(request: WSUpgradeRequest) -> WSListener | None:
        if request.path.startswith(b"/v1/ws/connect/user"):
            return Peer(relay, True)
        if request.path.startswith(b"/v1/ws/connect/waiter"):
            return Peer(relay, False)
        return None

    server = await ws_create_server(
        route, host, port, read_buffer_init_size=4096, enable_auto_ping=False, backlog=4096
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"relay_limit listening on {host}:{port}", flush=True)
    async with server:
        await stop.wait()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9001)
    args = parser.parse_args()
    uvloop.run(main(args.host, args.port))
