"""Three nodes in one process on the in-memory broker and one SQLite file (no services).

The same ClusterRuntime as with Redis; this checks the memory broker under
real traffic, and that settings are explicit enough to run nodes side by side.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from kefu.server.app import create_app
from kefu.server.serve import uvicorn_config
from kefu.settings import Settings
from support.client import SECRET, Client, open_socket, pair, person, say
from support.proxy import free_port


class InProcessNode:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.server = uvicorn.Server(uvicorn_config(create_app(settings), settings))
        self.server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.task = asyncio.ensure_future(self.server.serve())
        while not self.server.started:
            assert not self.task.done(), self.task
            await asyncio.sleep(0.01)

    async def stop(self) -> None:
        self.server.should_exit = True
        if self.task is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.task, 10)

    async def status(self) -> dict[str, Any]:
        async with httpx.AsyncClient(trust_env=False, timeout=5) as http:
            resp = await http.get(f"http://127.0.0.1:{self.settings.port}/v1/ws/status")
        data = resp.json()["data"]
        assert isinstance(data, dict)
        return data

    async def open(self, role: str) -> Client:
        url = f"ws://127.0.0.1:{self.settings.port}/v1/ws/connect/{role}"
        return await open_socket(url, f"{role}@{self.settings.port}", side=role)


@pytest.fixture
async def nodes(tmp_path: Path) -> AsyncIterator[list[InProcessNode]]:
    hub = f"test-{uuid.uuid4().hex}"
    started: list[InProcessNode] = []
    for _ in range(3):
        settings = Settings(
            database_url=f"sqlite:///{tmp_path / 'kefu.db'}",
            broker_url=f"memory://{hub}",
            secret=SECRET,
            port=free_port(),
            lease_ttl=1,
            node_ttl=1,
            resume_grace=1,
            rate_limit=10000,
            rate_burst=10000,
        )
        node = InProcessNode(settings)
        await node.start()
        started.append(node)
    yield started
    for node in started:
        await node.stop()


async def wait_status(node: InProcessNode, check: Any, timeout: float = 5) -> dict[str, Any]:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        status = await node.status()
        if check(status):
            return status
        assert asyncio.get_running_loop().time() < deadline, status
        await asyncio.sleep(0.05)


async def test_three_nodes_one_process(nodes: list[InProcessNode]) -> None:
    status = await wait_status(nodes[0], lambda s: s["leader"] and len(s["nodes"]) == 3)
    names = [(await n.status())["node"] for n in nodes]
    assert len(set(names)) == 3
    leader = nodes[names.index(status["leader"])]
    others = [n for n in nodes if n is not leader]

    waiter = await others[0].open("waiter")
    await waiter.auth(person("waiter"))
    await waiter.send({"type": "ready"})
    await waiter.expect("ready")
    user = await others[1].open("user")
    await user.auth(person("user"))
    await pair(user, waiter)
    await say(user, waiter, "hi across nodes")
    await say(waiter, user, "hello back")
    for node in nodes:
        s = await wait_status(node, lambda s: s["matchers"] == {waiter.uuid: [user.uuid]})
        assert (s["online_user_num"], s["online_waiter_num"]) == (1, 1)

    await leader.stop()  # a clean shutdown hands the lease over at once
    new = await wait_status(
        others[0], lambda s: s["leader"] in names and s["leader"] != status["leader"]
    )
    assert new["matchers"] == {waiter.uuid: [user.uuid]}
    await say(user, waiter, "after the handover")
    await waiter.send({"type": "disconnect", "payload": {"uuid": user.uuid}})
    await user.expect("disconnected", from_=waiter.uuid)
    await user.close()
    await waiter.close()
