"""The direct socket path (`kefu.server.direct`), in one process, so its objects can be seen.

A closed chat socket must be freed by reference counting alone: a cycle
left behind is collected only by the cyclic GC, whose pauses under a storm of
short connections took tens of milliseconds each.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import weakref
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from kefu.server import direct
from kefu.server.app import create_app
from kefu.server.serve import uvicorn_config
from kefu.settings import Settings
from kefu.store.migrate import upgrade

from .client import SECRET, open_socket, pair, person, say
from .conftest import free_port


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[Settings]:
    settings = Settings(
        port=free_port(),
        database_url=f"sqlite:///{tmp_path / 'kefu.db'}",
        secret=SECRET,
        resume_grace=0,
        rate_limit=10_000,
        rate_burst=10_000,
    )
    upgrade(settings.database_url)
    server = uvicorn.Server(uvicorn_config(create_app(settings), settings))
    server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
    task = asyncio.ensure_future(server.serve())
    while not server.started:
        assert not task.done(), task
        await asyncio.sleep(0.01)
    try:
        yield settings
    finally:
        server.should_exit = True
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, 10)


async def test_closed_sockets_leave_no_cycles(
    node: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    made: list[weakref.ref[object]] = []
    real_init = direct.DirectSocket.__init__
    real_made = direct.HttpProtocol.connection_made

    def init(self: direct.DirectSocket, *args: Any) -> None:
        made.append(weakref.ref(self))
        real_init(self, *args)

    def connection_made(self: direct.HttpProtocol, transport: Any) -> None:
        made.append(weakref.ref(self))
        real_made(self, transport)

    monkeypatch.setattr(direct.DirectSocket, "__init__", init)
    monkeypatch.setattr(direct.HttpProtocol, "connection_made", connection_made)
    base = f"ws://127.0.0.1:{node.port}/v1/ws/connect"
    gc.collect()
    gc.disable()
    try:
        for _ in range(3):
            waiter = await open_socket(f"{base}/waiter", "waiter", side="waiter")
            user = await open_socket(f"{base}/user", "user")
            await waiter.auth(person("waiter"))
            await waiter.send({"type": "ready"})
            await waiter.expect("ready")
            await user.auth(person())
            await pair(user, waiter)
            await say(user, waiter, "hello")
            await say(waiter, user, "hi")
            await user.close()
            await waiter.close()
        for _ in range(100):  # the server ends each socket once the close handshake is done
            if all(ref() is None for ref in made):
                break
            await asyncio.sleep(0.02)
        alive = [ref() for ref in made if ref() is not None]
        assert len(made) == 12  # an HTTP protocol and a socket each
        assert not alive, f"{len(alive)} closed sockets kept alive by reference cycles"
    finally:
        gc.enable()


async def test_frames_behind_a_waiting_one_keep_their_order(node: Settings) -> None:
    """A new account's auth waits for the store; history requests wait too.

    Everything pipelined behind them is answered in the order sent, also past
    the point where the server stops reading the socket until it catches up.
    """
    base = f"ws://127.0.0.1:{node.port}/v1/ws/connect"
    user = await open_socket(f"{base}/user", "user")
    who = person()
    frames = [{"type": "auth", "payload": {"token": who.token()}}]
    kinds = ["get_history", "typing", "connect", "get_history", "disconnect"] * 20
    for i, kind in enumerate(kinds):
        frame: dict[str, object] = {"type": kind, "op_id": f"op-{i}"}
        if kind == "typing":
            frame["payload"] = {"typing": True}
        frames.append(frame)
    for frame in frames:  # all sent before the first answer is read
        await user.send(frame)
    await user.expect("auth_success")
    answered = []
    while len(answered) < len(kinds):
        got = await user.recv(5.0)
        if got.get("op_id"):
            answered.append(got["op_id"])
    assert answered == [f"op-{i}" for i in range(len(kinds))]
    await user.close()
