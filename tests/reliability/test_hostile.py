"""Hostile HTTP before the application: endless heads, slow heads, sockets that never `auth`.

Every test talks to a real `kefu serve` over raw TCP or WebSockets, and reads
what the server did from the outside (its answers, its RSS in /proc, its logs).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from support.client import person
from support.logscan import remember

from .conftest import rss_kib, server_logs

pytestmark = pytest.mark.timeout(120)


async def _raw(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", port)


async def _status_line(reader: asyncio.StreamReader, timeout: float = 30) -> bytes:
    """The status line of the server's answer, or b'' if it closed without one."""
    with contextlib.suppress(ConnectionError):
        return await asyncio.wait_for(reader.readline(), timeout)
    return b""


async def _flood_headers(port: int, total: int) -> tuple[int, asyncio.StreamWriter]:
    """Send header lines (never ending the head) until `total` bytes or the server stops it.

    The connection is left open (the caller closes it), so what the server
    holds for it is still held when its memory is read.
    """
    _reader, writer = await _raw(port)
    sent = 0
    line = b"X-Pad: " + b"a" * 1017 + b"\r\n"
    try:
        writer.write(b"GET /v1/ws/status HTTP/1.1\r\nHost: kefu\r\n")
        while sent < total:
            writer.write(line * 64)
            sent += len(line) * 64
            await writer.drain()
    except ConnectionError:
        pass
    return sent, writer


async def _peak_rss(pid: int, until: asyncio.Event) -> int:
    """The largest RSS (KiB) seen every 10 ms until `until` is set."""
    peak = rss_kib(pid)
    while not until.is_set():
        peak = max(peak, rss_kib(pid))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(until.wait(), 0.01)
    return max(peak, rss_kib(pid))


async def test_endless_headers_cost_the_server_no_memory(kefu_server: Any) -> None:
    srv = kefu_server()
    assert srv.proc is not None
    async with httpx.AsyncClient(trust_env=False, timeout=30) as http:
        # a sign-in first: argon2 takes its 64 MiB for the dummy hash made at start
        body = {"username": "nobody", "password": "not this one"}
        assert (await http.post(f"{srv.url}/v1/auth/login", json=body)).status_code == 401
    before = rss_kib(srv.proc.pid)
    done = asyncio.Event()
    sampler = asyncio.ensure_future(_peak_rss(srv.proc.pid, done))
    # 4 clients, 64 MiB of header lines in all: answered 431 and cut off early
    floods = await asyncio.gather(*(_flood_headers(srv.port, 16 << 20) for _ in range(4)))
    await asyncio.sleep(0.5)  # whatever the server read is in its memory by now
    done.set()
    grown = await sampler - before
    for _, writer in floods:
        writer.close()
    sent = [n for n, _ in floods]
    assert all(n < (16 << 20) for n in sent), f"the server kept reading: {sent}"
    assert grown < 16 * 1024, f"RSS grew by {grown} KiB under 64 MiB of headers"
    async with httpx.AsyncClient(trust_env=False, timeout=5) as http:
        assert (await http.get(f"{srv.url}/v1/ws/status")).status_code == 200


async def test_head_limits_answer_431(kefu_server: Any) -> None:
    srv = kefu_server(max_header_bytes=4096, max_headers=20)
    # one header line that never ends
    reader, writer = await _raw(srv.port)
    writer.write(b"GET /v1/ws/status HTTP/1.1\r\nX-Long: " + b"a" * 8192)
    assert (await _status_line(reader)).startswith(b"HTTP/1.1 431 ")
    writer.close()
    # too many header fields
    reader, writer = await _raw(srv.port)
    fields = b"".join(b"X-F%d: 1\r\n" % i for i in range(21))
    writer.write(b"GET /v1/ws/status HTTP/1.1\r\nHost: kefu\r\n" + fields + b"\r\n")
    assert (await _status_line(reader)).startswith(b"HTTP/1.1 431 ")
    writer.close()
    # within both limits: served
    reader, writer = await _raw(srv.port)
    fields = b"".join(b"X-F%d: 1\r\n" % i for i in range(18))
    writer.write(b"GET /v1/ws/status HTTP/1.1\r\nHost: kefu\r\n" + fields + b"\r\n")
    assert (await _status_line(reader)).startswith(b"HTTP/1.1 200 ")
    writer.close()


async def test_a_head_that_does_not_finish_in_time_is_cut_off(kefu_server: Any) -> None:
    srv = kefu_server(handshake_timeout=1)
    # a WebSocket handshake sent slowly: part of the head, then nothing
    reader, writer = await _raw(srv.port)
    writer.write(b"GET /v1/ws/connect/user HTTP/1.1\r\nHost: kefu\r\nUpgrade: websocket\r\n")
    started = time.monotonic()
    assert (await _status_line(reader)).startswith(b"HTTP/1.1 408 ")
    assert time.monotonic() - started >= 0.9  # not before the deadline
    writer.close()
    # a connection that never says anything is closed without an answer
    reader, writer = await _raw(srv.port)
    assert await asyncio.wait_for(reader.read(), 30) == b""
    writer.close()
    # a kept-alive connection gets the deadline again for its next request
    reader, writer = await _raw(srv.port)
    writer.write(b"GET /v1/ws/status HTTP/1.1\r\nHost: kefu\r\n\r\n")
    assert (await _status_line(reader)).startswith(b"HTTP/1.1 200 ")
    writer.close()


async def _ws(srv: Any, role: str = "user", **headers: str) -> Any:
    return await connect(
        srv.ws_url(f"/v1/ws/connect/{role}"),
        additional_headers=headers or None,
        proxy=None,
        open_timeout=5,
    )


async def _refused(srv: Any, **headers: str) -> int:
    with pytest.raises(InvalidStatus) as refused:
        await _ws(srv, **headers)
    response = refused.value.response
    assert response.headers.get("Retry-After"), response.headers
    return int(response.status_code)


async def test_sockets_waiting_to_authenticate_are_capped_per_address(kefu_server: Any) -> None:
    srv = kefu_server(max_unauthenticated_per_address=3)
    waiting = [await _ws(srv) for _ in range(3)]
    assert await _refused(srv) == 429
    # X-Forwarded-For from a peer that is not a trusted proxy changes nothing
    assert await _refused(srv, **{"X-Forwarded-For": "203.0.113.9"}) == 429
    # one authenticates: its place is free again
    who = person("user")
    remember(who.token())
    await waiting[0].send('{"type":"auth","payload":{"token":"' + who.token() + '"}}')
    assert '"auth_success"' in await asyncio.wait_for(waiting[0].recv(), 5)
    extra = await _ws(srv)
    assert await _refused(srv) == 429
    # one goes away: its place is free again
    await waiting[1].close()
    for _ in range(100):
        try:
            waiting.append(await _ws(srv))
            break
        except InvalidStatus:
            await asyncio.sleep(0.05)  # the server sees the close a moment later
    else:
        raise AssertionError("a closed socket's place was never freed")
    for ws in (*waiting, extra):
        await ws.close()


async def test_trusted_proxies_give_each_client_its_own_budget(kefu_server: Any) -> None:
    srv = kefu_server(
        trusted_proxies="127.0.0.1", max_unauthenticated_per_address=2, max_unauthenticated=5
    )
    a = [await _ws(srv, **{"X-Forwarded-For": "198.51.100.1"}) for _ in range(2)]
    assert await _refused(srv, **{"X-Forwarded-For": "198.51.100.1"}) == 429
    b = [await _ws(srv, **{"X-Forwarded-For": "198.51.100.2"}) for _ in range(2)]
    c = [await _ws(srv, **{"X-Forwarded-For": "198.51.100.3"})]
    # five wait in all: the sixth is refused whatever its address
    assert await _refused(srv, **{"X-Forwarded-For": "198.51.100.4"}) == 503
    for ws in (*a, *b, *c):
        await ws.close()


async def test_client_mistakes_are_logged_without_tracebacks_and_rate_limited(
    kefu_server: Any,
) -> None:
    srv = kefu_server(log_level="info")
    for _ in range(60):
        reader, writer = await _raw(srv.port)
        writer.write(b"NOT HTTP AT ALL\r\n\r\n")
        assert (await _status_line(reader)).startswith(b"HTTP/1.1 400 ")
        writer.close()
    for _ in range(30):  # sockets opened and closed: nothing per socket at the default level
        ws = await _ws(srv)
        await ws.close()
    logs = server_logs(srv)
    assert "Traceback" not in logs
    assert logs.count("invalid HTTP request") <= 20, logs[-2000:]


async def test_socket_opens_and_closes_leave_no_log_lines_at_the_default_level(
    kefu_server: Any,
) -> None:
    srv = kefu_server()
    for _ in range(20):
        ws = await _ws(srv)
        await ws.close()
    who = person("user")
    for _ in range(5):
        ws = await _ws(srv)
        await ws.send('{"type":"auth","payload":{"token":"' + who.token() + '"}}')
        await asyncio.wait_for(ws.recv(), 5)
        await ws.close()
    await asyncio.sleep(0.2)
    srv.stop()
    lines = [ln for ln in server_logs(srv).splitlines() if ln.strip()]
    assert len(lines) <= 3, lines  # start-up and shut-down notes only


def _nested(depth: int, op_id: str) -> str:
    """A text frame with an extra field nested `depth` deep (unknown fields are skipped)."""
    inner = "[" * depth + "]" * depth
    return (
        '{"type":"message_text","op_id":"' + op_id + '","extra":{"a":' + inner + "},"
        '"payload":{"text":"nested"}}'
    )


async def test_a_frame_nested_20000_deep_is_answered_and_the_socket_lives(
    kefu_server: Any,
) -> None:
    srv = kefu_server()
    u = await srv.user()
    w = await srv.waiter()
    from support.client import new_op_id, pair, say

    await pair(u, w)
    op_id = new_op_id()
    frame = _nested(20_000, op_id)
    assert len(frame) > 40_000
    await u.send_raw(frame)
    err = await u.expect_error(100000, op_id=op_id)
    assert "deep" in err["payload"]["message"]
    await say(u, w, "still here")
    # before `auth` too, and without an op_id to echo
    bare = await srv.open("user")
    await bare.send_raw("[" * 20_000 + "]" * 20_000)
    await bare.expect_error(100000)
    await bare.send_raw(_nested(20_000, "x"))
    await bare.expect_error(100000, op_id="x")
    await bare.send_raw('{"type":"connect","payload":' + "[" * 20_000 + "]" * 20_000 + "}")
    await bare.expect_error(100000)
    assert "Traceback" not in server_logs(srv)
    assert "RecursionError" not in server_logs(srv)
