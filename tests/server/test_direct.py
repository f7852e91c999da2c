"""The chat sockets' protocol on both transports (`kefu.server.transport`), in one process.

Every test runs on the fast transport and on the plain one (`transport`),
where they differ the test says how. In one process, so the socket objects
can be seen: a closed chat socket must be freed by reference counting alone,
since a cycle left behind is collected only by the cyclic GC, whose pauses
under a storm of short connections took tens of milliseconds each.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import time
import weakref
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

from kefu.server.transport import fast, plain
from kefu.settings import Settings
from support.client import open_socket, pair, person, say
from support.inprocess import serving


@pytest.fixture(params=["fast", "plain"])
def transport(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def node(tmp_path: Path, transport: str) -> AsyncIterator[Settings]:
    async with serving(tmp_path, transport=transport) as settings:
        yield settings


async def test_closed_sockets_leave_no_cycles(
    node: Settings, transport: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fast: its sockets and HTTP protocol objects; plain: its sockets (the rest is uvicorn's)."""
    made: list[weakref.ref[object]] = []
    real_init = fast.FastSocket.__init__
    real_made = fast.HttpProtocol.connection_made
    real_plain = plain.PlainSocket.__init__

    def init(self: fast.FastSocket, *args: Any) -> None:
        made.append(weakref.ref(self))
        real_init(self, *args)

    def connection_made(self: fast.HttpProtocol, transport: Any) -> None:
        made.append(weakref.ref(self))
        real_made(self, transport)

    def init_plain(self: plain.PlainSocket, *args: Any) -> None:
        made.append(weakref.ref(self))
        real_plain(self, *args)

    monkeypatch.setattr(fast.FastSocket, "__init__", init)
    monkeypatch.setattr(fast.HttpProtocol, "connection_made", connection_made)
    monkeypatch.setattr(plain.PlainSocket, "__init__", init_plain)
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
        deadline = time.monotonic() + 10  # the server ends each socket after its close handshake
        while time.monotonic() < deadline and any(ref() is not None for ref in made):
            await asyncio.sleep(0.02)
        alive = [ref() for ref in made if ref() is not None]
        # fast: an HTTP protocol and a socket each; plain: a socket each
        assert len(made) == (12 if transport == "fast" else 6)
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
    frames: list[dict[str, object]] = [{"type": "auth", "payload": {"token": who.token()}}]
    kinds = ["get_history", "typing", "connect", "get_history", "disconnect"] * 20
    for i, kind in enumerate(kinds):
        frame: dict[str, object] = {"type": kind, "op_id": f"op-{i}"}
        if kind == "typing":
            frame["payload"] = {"typing": True}
        frames.append(frame)
    for frame in frames:  # all sent before the first answer is read
        await user.send(frame)
    await user.expect("auth_success")
    answered: list[str] = []
    while len(answered) < len(kinds):
        got = await user.recv(5.0)
        if got.get("op_id"):
            answered.append(got["op_id"])
    assert answered == [f"op-{i}" for i in range(len(kinds))]
    await user.close()


# -- the handshake and keepalive, on a raw TCP socket ------------------------------------------
KEY = "dGhlIHNhbXBsZSBub25jZQ=="  # RFC 6455's example: accept key s3pPLMBiTxaQ9kYGzzhZRbK+xOo=


async def _upgrade(
    port: int, path: str = "/v1/ws/connect/user", **headers: str
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, str]:
    fields = {
        "Host": f"127.0.0.1:{port}",
        "Upgrade": "websocket",
        "Connection": "Upgrade",
        "Sec-WebSocket-Key": KEY,
        "Sec-WebSocket-Version": "13",
    }
    fields.update({k.replace("_", "-"): v for k, v in headers.items()})
    head = f"GET {path} HTTP/1.1\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in fields.items() if v)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write((head + "\r\n").encode())
    response = (await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)).decode()
    return reader, writer, response


async def test_the_opening_handshake(node: Settings) -> None:
    _, writer, response = await _upgrade(node.port)
    lines = response.split("\r\n")
    assert lines[0] == "HTTP/1.1 101 Switching Protocols"
    assert "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" in lines
    assert not any(line.lower().startswith("sec-websocket-extensions") for line in lines)
    writer.close()


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({"Sec_WebSocket_Version": "8"}, "426 Upgrade Required"),  # plain: 400 (websockets')
        ({"Sec_WebSocket_Key": ""}, "400 Bad Request"),
        ({"Sec_WebSocket_Key": "c2hvcnQ="}, "400 Bad Request"),  # 5 bytes, not 16
        ({"Sec_WebSocket_Key": "not base64!"}, "400 Bad Request"),
        ({"Origin": "https://evil.example"}, "403 Forbidden"),
    ],
)
async def test_bad_handshakes_are_refused(
    node: Settings, transport: str, headers: dict[str, str], status: str
) -> None:
    if transport == "plain" and status.startswith("426"):
        status = "400 Bad Request"
    reader, writer, response = await _upgrade(node.port, **headers)
    assert response.startswith(f"HTTP/1.1 {status}\r\n"), response
    if status.startswith("426"):
        assert "Sec-WebSocket-Version: 13" in response
    assert await asyncio.wait_for(reader.read(), 5)  # the reason, then the server closes
    writer.close()


async def test_a_silent_client_is_closed_after_an_unanswered_ping(
    tmp_path: Path, transport: str
) -> None:
    async with serving(
        tmp_path, ping_interval=0.3, ping_timeout=0.3, transport=transport
    ) as settings:
        reader, writer, response = await _upgrade(settings.port)
        assert response.startswith("HTTP/1.1 101")
        opcode, _ = await _server_frame(reader)
        assert opcode == 0x89  # FIN + ping, never answered
        opcode, body = await _server_frame(reader)
        assert opcode == 0x88  # FIN + close
        assert int.from_bytes(body[:2], "big") == 1011, body
        assert await asyncio.wait_for(reader.read(), 10) == b""  # and the TCP connection ends
        writer.close()


async def test_a_client_that_answers_pings_stays(tmp_path: Path, transport: str) -> None:
    """A ping every 0.2 s; the server pings again only once the pong matched (else 1011)."""
    async with serving(
        tmp_path, ping_interval=0.2, ping_timeout=30, transport=transport
    ) as settings:
        reader, writer, response = await _upgrade(settings.port)
        assert response.startswith("HTTP/1.1 101")
        payloads = []
        for _ in range(5):  # each ping after the first: the previous pong was accepted
            opcode, payload = await _server_frame(reader)
            assert opcode == 0x89, (opcode, payload)
            payloads.append(payload)
            writer.write(_frame(0xA, payload))
        assert len(set(payloads)) == 5  # a fresh payload each round
        writer.write(_frame(0x1, _ask(0)))  # and the socket still answers
        opcode, payload = await _server_frame(reader)
        while opcode == 0x89:  # a ping that crossed the request
            writer.write(_frame(0xA, payload))
            opcode, payload = await _server_frame(reader)
        assert opcode == 0x81 and json.loads(payload)["op_id"] == "op-0", payload
        writer.close()


async def test_a_real_client_answering_pings_keeps_chatting(tmp_path: Path, transport: str) -> None:
    async with serving(
        tmp_path, ping_interval=0.2, ping_timeout=30, transport=transport
    ) as settings:
        base = f"ws://127.0.0.1:{settings.port}/v1/ws/connect"
        waiter = await open_socket(f"{base}/waiter", "waiter", side="waiter")
        user = await open_socket(f"{base}/user", "user")  # websockets answers pings itself
        await waiter.auth(person("waiter"))
        await waiter.send({"type": "ready"})
        await waiter.expect("ready")
        await user.auth(person())
        await pair(user, waiter)
        await asyncio.sleep(1.0)  # several ping rounds
        await say(user, waiter, "still here")
        await user.close()
        await waiter.close()


def _frame(opcode: int, payload: bytes, *, fin: bool = True) -> bytes:
    """One masked client frame."""
    mask = os.urandom(4)
    head = bytes(((0x80 if fin else 0) | opcode,))
    n = len(payload)
    if n < 126:
        head += bytes((0x80 | n,))
    else:
        head += bytes((0x80 | 126,)) + n.to_bytes(2, "big")
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


async def _server_frame(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await asyncio.wait_for(reader.readexactly(2), 10)
    n = head[1] & 0x7F
    if n == 126:
        n = int.from_bytes(await reader.readexactly(2), "big")
    return head[0], await asyncio.wait_for(reader.readexactly(n), 10)


def _ask(i: int, pad: int = 0) -> bytes:
    body = {"type": "connect", "op_id": f"op-{i}", "payload": {"pad": "x" * pad}}
    return json.dumps(body).encode()


@pytest.mark.parametrize("chunk", [1, 3, 7, 1000])
async def test_frames_cut_anywhere_are_read_whole(node: Settings, chunk: int) -> None:
    """Frames arriving in pieces of any size, short and 16-bit lengths, a ping among them."""
    reader, writer, response = await _upgrade(node.port)
    assert response.startswith("HTTP/1.1 101")
    stream = b"".join(_frame(0x1, _ask(i, pad=300 * (i % 3))) for i in range(12))
    stream += _frame(0x9, b"are you there")
    stream += b"".join(_frame(0x1, _ask(i)) for i in range(12, 20))
    for at in range(0, len(stream), chunk):
        writer.write(stream[at : at + chunk])
        await writer.drain()
    answers: list[str] = []
    pongs: list[bytes] = []
    while len(answers) < 20 or not pongs:
        opcode, payload = await _server_frame(reader)
        if opcode == 0x8A:
            pongs.append(payload)
        else:
            assert opcode == 0x81
            answers.append(json.loads(payload)["op_id"])
    assert answers == [f"op-{i}" for i in range(20)]  # each refused (no auth), in order
    assert pongs == [b"are you there"]
    writer.close()


async def test_after_a_fragmented_message_every_frame_is_still_read(
    node: Settings, transport: str
) -> None:
    """A fragment hands the socket to websockets' parser; frames after it are read as before.

    Fast: the frames before the invalid one are answered before its close
    frame, all sent in one write. Plain: uvicorn closes at once on the
    invalid frame, dropping answers not yet sent, so it is sent once the
    others are answered.
    """
    reader, writer, _ = await _upgrade(node.port)
    first, rest = _ask(1)[:10], _ask(1)[10:]
    stream = _frame(0x1, _ask(0)) + _frame(0x1, first, fin=False) + _frame(0x0, rest)
    stream += _frame(0x9, b"ping") + _frame(0x1, _ask(2))
    invalid = _frame(0x1, b"\xff\xfe not UTF-8")
    writer.write(stream + invalid if transport == "fast" else stream)
    seen = []
    while True:
        opcode, payload = await _server_frame(reader)
        seen.append((opcode, payload if opcode != 0x81 else json.loads(payload).get("op_id")))
        if transport == "plain" and seen[-1] == (0x81, "op-2"):
            writer.write(invalid)
        if opcode == 0x88:
            break
    answers = [payload for opcode, payload in seen if opcode == 0x81]
    assert answers == ["op-0", "op-1", "op-2"]  # op-1 in two fragments
    assert (0x8A, b"ping") in seen  # answered when it came; kefu's own frames go at a pass's end
    assert seen[-1][0] == 0x88 and int.from_bytes(seen[-1][1][:2], "big") == 1007  # bad UTF-8
    assert await asyncio.wait_for(reader.read(), 5) == b""
    writer.close()


async def test_shutdown_closes_1012_without_waiting_for_the_answer(
    tmp_path: Path, transport: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stopping server sends 1012 and ends the TCP connection at once, as uvicorn does.

    The client never answers the close frame. A server that waited for the
    answer would keep the connection for its close timeout, set to a minute
    here (fast: `CLOSE_TIMEOUT`; plain: uvicorn's), so the half-minute this
    test allows cannot be reached by waiting, however slow the machine.
    """
    monkeypatch.setattr(fast, "CLOSE_TIMEOUT", 60.0)
    real_init = WebSocketsSansIOProtocol.__init__

    def patient(self: WebSocketsSansIOProtocol, *args: Any, **kwargs: Any) -> None:
        real_init(self, *args, **kwargs)
        self.close_timeout = 60.0

    monkeypatch.setattr(WebSocketsSansIOProtocol, "__init__", patient)
    serving_ = serving(tmp_path, transport=transport)
    settings = await serving_.__aenter__()
    stopping: asyncio.Future[Any] | None = None
    try:
        reader, writer, response = await _upgrade(settings.port)
        assert response.startswith("HTTP/1.1 101")
        stopping = asyncio.ensure_future(serving_.__aexit__(None, None, None))
        opcode, body = await _server_frame(reader)
        assert opcode == 0x88  # FIN + close
        assert int.from_bytes(body[:2], "big") == 1012, body
        assert await asyncio.wait_for(reader.read(), 30) == b""  # not after CLOSE_TIMEOUT
        writer.close()
    finally:
        if stopping is None:
            await serving_.__aexit__(None, None, None)
        else:
            await stopping
