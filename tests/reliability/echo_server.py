"""A test-only echo endpoint on kefu's own server stack, for the Autobahn cases (kosoku).

`python echo_server.py PORT [MAX_FRAME_BYTES]` serves `/echo` as kefu serves
its chat sockets: a chat endpoint (`kefu.server.transport.publish`) of a tiny
Starlette app (which answers plain HTTP on `/` and serves `/asgi-echo` through
ASGI), run by `kefu.server.serve.uvicorn_config(app, settings)`: the same
uvicorn, transport, limits, keepalive and compression settings as `kefu serve`.
KEFU_TRANSPORT chooses the transport, as for `kefu serve` (KEFU_TEST_TRANSPORT
overrides it, as for the e2e servers). Text is echoed as text, binary as binary.

`python echo_server.py PORT calibrate` runs python-websockets' own compliance
echo server instead (`max_size=2**25`, no compression), the reference the
kosoku verdicts are calibrated against.
"""

from __future__ import annotations

import os
import sys
from typing import Any, cast

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from kefu.server.serve import uvicorn_config
from kefu.server.transport import BinaryTransport, ChatTransport, Endpoint, publish
from kefu.settings import Settings


async def echo(ws: WebSocket) -> None:
    await ws.accept()
    try:
        while True:
            message = await ws.receive()
            if message["type"] == "websocket.disconnect":
                return
            if message.get("text") is not None:
                await ws.send_text(message["text"])
            elif message.get("bytes") is not None:
                await ws.send_bytes(message["bytes"])
    except WebSocketDisconnect:
        return


def open_echo(chat: ChatTransport, headers: dict[str, str], peer: str) -> None:
    sock = cast(BinaryTransport, chat)  # both transports send binary too

    def on_frame(message: str | bytes) -> None:
        if isinstance(message, str):
            sock.write_frames([message.encode()])
        else:
            sock.write_binary(message)

    sock.on_frame = on_frame


async def hello(request: Request) -> PlainTextResponse:
    return PlainTextResponse("echo server")


def app() -> Starlette:
    routes = [Route("/", hello), WebSocketRoute("/asgi-echo", echo)]
    application = Starlette(routes=routes)
    publish(application, {"/echo": Endpoint(open_echo)})
    return application


async def calibration(port: int) -> None:
    from websockets.asyncio.server import ServerConnection, serve

    async def handler(ws: ServerConnection) -> None:
        async for message in ws:
            await ws.send(message)

    async with serve(handler, "127.0.0.1", port, max_size=2**25, compression=None) as server:
        await server.serve_forever()


def main() -> None:
    port = int(sys.argv[1])
    if sys.argv[2:] == ["calibrate"]:
        import asyncio

        asyncio.run(calibration(port))
        return
    values: dict[str, Any] = {"host": "127.0.0.1", "port": port}
    if len(sys.argv) > 2:
        values["max_frame_bytes"] = int(sys.argv[2])
    if os.environ.get("KEFU_TEST_TRANSPORT"):  # as for the e2e servers (support/servers.py)
        values["transport"] = os.environ["KEFU_TEST_TRANSPORT"]
    settings = Settings(**values)
    uvicorn.Server(uvicorn_config(app(), settings)).run()


if __name__ == "__main__":
    main()
