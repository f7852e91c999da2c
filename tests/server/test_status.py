"""GET /v1/ws/status with real counts."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from support.client import pair
from support.servers import MakeServer, Server

pytestmark = pytest.mark.timeout(30)


def _nonempty(matchers: dict[str, list[str]]) -> dict[str, list[str]]:
    return {k: sorted(v) for k, v in matchers.items() if v}


async def _data(srv: Server) -> dict[str, Any]:
    body = await srv.status()
    assert body["status"] == 1 and body["message"] == "", body
    data = body["data"]
    assert set(data) >= {"online_waiter_num", "online_user_num", "pending_num", "matchers"}
    return data


async def _eventually(srv: Server, expected: dict[str, Any], timeout: float = 3.0) -> None:
    """Closing a socket is seen by the server a moment later: poll until the counts match."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        data = await _data(srv)
        got = {k: data[k] for k in expected if k != "matchers"}
        if "matchers" in expected:
            got["matchers"] = _nonempty(data["matchers"])
        if got == expected or asyncio.get_running_loop().time() > deadline:
            break
        await asyncio.sleep(0.05)
    assert got == expected


async def test_status_of_an_empty_server(server: Server) -> None:
    srv = server  # the shared server is handed over with an empty desk
    async with httpx.AsyncClient(trust_env=False) as http:
        resp = await http.get(f"{srv.url}/v1/ws/status")
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("application/json")
    assert resp.json() == {
        "status": 1,
        "message": "",
        "data": {"online_waiter_num": 0, "online_user_num": 0, "pending_num": 0, "matchers": {}},
    }


async def test_status_counts_follow_the_desk(make_server: MakeServer) -> None:
    srv = make_server(max_users_per_waiter=2)
    w1 = await srv.waiter(label="w1")
    w2 = await srv.waiter(label="w2", ready=False)
    u = [await srv.user(label=f"u{i}") for i in range(4)]
    await pair(u[0], w1)
    await pair(u[1], w1)
    await u[2].send({"type": "connect"})
    await u[2].expect("connect_queue", payload={"location": 0})
    # u[3] is online but has not asked for a waiter

    data = await _data(srv)
    assert data["online_waiter_num"] == 2
    assert data["online_user_num"] == 4
    assert data["pending_num"] == 1
    assert _nonempty(data["matchers"]) == {w1.uuid: sorted([u[0].uuid, u[1].uuid])}
    assert set(data["matchers"]) <= {w1.uuid, w2.uuid}

    # w2 becomes ready: it takes the queued user
    await w2.send({"type": "ready"})
    await w2.expect("ready")
    await w2.expect("new_connection", from_=u[2].uuid)
    await u[2].expect("connect_success", from_=w2.uuid)
    data = await _data(srv)
    assert data["pending_num"] == 0
    assert _nonempty(data["matchers"]) == {
        w1.uuid: sorted([u[0].uuid, u[1].uuid]),
        w2.uuid: [u[2].uuid],
    }

    # a conversation ends, a user leaves, a waiter leaves
    await u[0].send({"type": "disconnect"})
    await u[0].expect("disconnected")
    await w1.expect("disconnected")
    await u[3].close()
    await w2.send({"type": "disconnect", "payload": {"uuid": u[2].uuid}})
    await w2.expect("disconnected")
    await w2.close()
    await u[2].expect("disconnected")
    await _eventually(
        srv,
        {
            "online_waiter_num": 1,
            "online_user_num": 3,
            "pending_num": 0,
            "matchers": {w1.uuid: [u[1].uuid]},
        },
    )


async def test_status_is_read_only(server: Server) -> None:
    async with httpx.AsyncClient(trust_env=False) as http:
        resp = await http.post(f"{server.url}/v1/ws/status")
    assert resp.status_code in (404, 405)
