"""Low-level helpers shared by the reliability tests: raw sockets, tokens, the database.

`tests/support/client.py` (imported here) checks every frame's envelope and is
what most tests use. The chaos and slow-reader tests need clients that
survive their server being killed, so they use `connect_ws` and keep their
own state.
"""

from __future__ import annotations

import asyncio
import json
import socket
import sqlite3
from pathlib import Path
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from support.client import Person, close_code
from support.logscan import remember


async def connect_ws(
    url: str,
    *,
    origin: str | None = None,
    max_queue: int | None = None,
    rcvbuf: int | None = None,
    compression: str | None = None,
    open_timeout: float = 5,
) -> ClientConnection:
    """A websockets client; `rcvbuf` shrinks the kernel receive buffer (slow readers)."""
    sock = None
    if rcvbuf is not None:
        host, _, rest = url.removeprefix("ws://").partition(":")
        port = int(rest.split("/", 1)[0])
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, (host, port))
    return await connect(
        url,
        sock=sock,
        compression=compression,
        proxy=None,
        origin=origin,  # type: ignore[arg-type]
        open_timeout=open_timeout,
        close_timeout=2,
        ping_interval=None,
        max_queue=max_queue,
        max_size=None,
    )


def token_of(who: Person, **extra: Any) -> str:
    token = who.token(**extra)
    remember(token)
    return token


async def send_json(ws: ClientConnection, frame: Any) -> None:
    await ws.send(json.dumps(frame))


async def recv_json(ws: ClientConnection, timeout: float = 5.0) -> dict[str, Any]:
    raw = await asyncio.wait_for(ws.recv(), timeout)
    frame = json.loads(raw)
    assert isinstance(frame, dict), frame
    return frame


async def recv_until(
    ws: ClientConnection, type_: str, timeout: float = 5.0, **fields: Any
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Read frames until one of `type_` (with `fields`); returns it and the frames before."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    skipped: list[dict[str, Any]] = []
    while True:
        frame = await recv_json(ws, max(0.01, deadline - loop.time()))
        if frame.get("type") == type_ and all(frame.get(k) == v for k, v in fields.items()):
            return frame, skipped
        skipped.append(frame)


async def closed_code(ws: ClientConnection, timeout: float = 5.0) -> int | None:
    """Read (and drop) frames until the socket closes; the close code."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    try:
        while True:
            await asyncio.wait_for(ws.recv(), max(0.01, deadline - loop.time()))
    except ConnectionClosed as exc:
        return close_code(exc)


def db_rows(db: Path, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    """Read the server's SQLite file (committed data only; safe while it runs, WAL)."""
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        return list(con.execute(sql, args))
    finally:
        con.close()


def count_rows(db: Path, table: str) -> int:
    return int(db_rows(db, f"SELECT COUNT(*) FROM {table}")[0][0])
