"""Which transport serves the chat sockets (KEFU_TRANSPORT), and the plain transport's own parts.

The protocol itself is tested on both transports by test_direct.py; here:
the choice and its fallback (a uvicorn the fast transport does not know
must never break a deployment), that only `transport/fast.py` touches
uvicorn's internals, the refusals before the upgrade on both, and the plain
transport's backpressure, which test_direct cannot reach.
"""

from __future__ import annotations

import ast
import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

import kefu
from kefu.server.app import create_app
from kefu.server.serve import uvicorn_config
from kefu.server.transport import Endpoint, choice, fast, plain
from kefu.settings import Settings
from support.client import open_socket, pair, person, say
from support.inprocess import serving

SRC = Path(kefu.__file__).resolve().parent


# -- the choice ------------------------------------------------------------------------------
def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


def test_the_installed_uvicorn_is_one_the_fast_transport_knows(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Else every test of the fast transport would silently run on the plain one."""
    assert choice.fast_unavailable() is None
    assert choice.choose("auto") == "fast"
    assert choice.choose("fast") == "fast"
    assert choice.choose("plain") == "plain"
    assert _warnings(caplog) == []


@pytest.mark.parametrize("setting", ["auto", "fast"])
@pytest.mark.parametrize("version", ["0.99.0", "0.56.0", "0.53.9", "1.0.0rc1", "unknown"])
def test_an_unknown_uvicorn_falls_back_to_plain_with_one_warning(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, setting: str, version: str
) -> None:
    monkeypatch.setattr(choice, "installed_uvicorn", lambda: version)
    assert choice.choose(setting) == "plain"
    warnings = _warnings(caplog)
    assert len(warnings) == 1, warnings
    assert f"uvicorn {version}" in warnings[0] and "plain transport" in warnings[0]


def test_a_known_uvicorn_without_the_internals_falls_back_too(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delattr(fast.HttpToolsProtocol, "_should_upgrade")
    assert choice.choose("auto") == "plain"
    warnings = _warnings(caplog)
    assert len(warnings) == 1 and "_should_upgrade" in warnings[0], warnings


def test_plain_is_chosen_without_a_warning_whatever_the_uvicorn(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(choice, "installed_uvicorn", lambda: "0.99.0")
    assert choice.choose("plain") == "plain"
    assert _warnings(caplog) == []


def test_the_setting_takes_only_the_three_values() -> None:
    assert Settings().transport == "auto"
    for value in ("auto", "fast", "plain"):
        assert Settings(transport=value).transport == value
    with pytest.raises(ValueError):
        Settings(transport="turbo")


def test_uvicorn_is_configured_for_the_chosen_transport(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'kefu.db'}", secret="s" * 32)
    app = create_app(settings)
    config = uvicorn_config(app, settings)
    assert isinstance(config.http, type) and issubclass(config.http, fast.HttpProtocol)
    assert set(config.http.endpoints) == {b"/v1/ws/connect/user", b"/v1/ws/connect/waiter"}
    assert config.app is app
    monkeypatch.setattr(choice, "installed_uvicorn", lambda: "0.99.0")
    config = uvicorn_config(app, settings)
    assert config.http == "h11"
    assert config.h11_max_incomplete_event_size == settings.max_header_bytes
    assert isinstance(config.app, plain.ChatApp) and config.app.app is app
    assert set(config.app.endpoints) == {"/v1/ws/connect/user", "/v1/ws/connect/waiter"}


async def test_with_an_unknown_uvicorn_the_chat_runs_on_plain(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(choice, "installed_uvicorn", lambda: "0.99.0")
    made: list[object] = []
    real_init = plain.PlainSocket.__init__

    def init(self: plain.PlainSocket, *args: Any) -> None:
        made.append(self)
        real_init(self, *args)

    monkeypatch.setattr(plain.PlainSocket, "__init__", init)
    async with serving(tmp_path) as settings:  # KEFU_TRANSPORT=auto
        base = f"ws://127.0.0.1:{settings.port}/v1/ws/connect"
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
    assert len(made) == 2
    assert len([w for w in _warnings(caplog) if "plain transport" in w]) == 1


# -- only the fast transport touches uvicorn's internals ----------------------------------------
def test_only_the_fast_transport_imports_uvicorns_internals() -> None:
    """`import uvicorn` / `uvicorn.Config` are public; `uvicorn.<module>` is not, but in fast.py."""
    found = []
    for path in sorted(SRC.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            if any(name.startswith("uvicorn.") for name in names):
                found.append(path.relative_to(SRC).as_posix())
    assert set(found) == {"server/transport/fast.py"}, found


# -- refusals before the upgrade, on both transports ------------------------------------------
@pytest.fixture(params=["fast", "plain"])
def transport(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def _head(port: int, path: str) -> str:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        (
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    try:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        body = await asyncio.wait_for(reader.read(), 10)  # then the server closes
        return (head + body).decode()
    finally:
        writer.close()


async def test_a_refused_upgrade_is_its_status_with_retry_after(
    tmp_path: Path, transport: str
) -> None:
    """Over KEFU_MAX_UNAUTHENTICATED: HTTP 503 with Retry-After and the reason, no socket."""
    async with serving(tmp_path, transport=transport, max_unauthenticated=1) as settings:
        first = await open_socket(
            f"ws://127.0.0.1:{settings.port}/v1/ws/connect/user", "first"
        )  # not authenticated: it holds the one place
        response = await _head(settings.port, "/v1/ws/connect/user")
        lines = [line.lower() for line in response.split("\r\n")]
        assert lines[0] == "http/1.1 503 service unavailable", response
        assert "retry-after: 5" in lines
        assert response.endswith("too many connections are waiting to authenticate; retry later")
        await first.close()


async def test_plain_bounds_request_heads(tmp_path: Path) -> None:
    """h11's limit (KEFU_MAX_HEADER_BYTES): a longer head is refused (400), the connection ends."""
    async with serving(tmp_path, transport="plain", max_header_bytes=4096) as settings:
        reader, writer = await asyncio.open_connection("127.0.0.1", settings.port)
        filler = "".join(f"X-Filler-{i}: {'a' * 1000}\r\n" for i in range(8))  # no end
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n" + filler.encode())
        response = await asyncio.wait_for(reader.read(), 10)
        assert response.startswith(b"HTTP/1.1 400 "), response[:200]
        writer.close()


# -- the plain transport's backpressure, without a network ------------------------------------
class _Gate:
    """An ASGI `send` that holds every message until opened (a client that does not read)."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []
        self.open = asyncio.Event()

    async def send(self, message: Any) -> None:
        await self.open.wait()
        self.sent.append(dict(message))


async def _settle() -> None:
    for _ in range(10):
        await asyncio.sleep(0)


async def test_plain_reports_a_slow_reader_and_its_recovery() -> None:
    gate = _Gate()
    sock = plain.PlainSocket(gate.send)
    writable: list[bool] = []
    sock.on_writable = writable.append
    frame = b'{"type":"x","pad":"' + b"a" * 1000 + b'"}'
    assert sock.write_frames([frame])  # the writer starts, and waits on the client
    await _settle()
    batches = 0
    while not writable:  # batches pile up behind it; past HIGH_WATER it is a slow reader
        assert sock.write_frames([frame] * 8)
        batches += 1
        assert batches * 8 * len(frame) <= 2 * plain.HIGH_WATER
    assert writable == [False]
    gate.open.set()
    await _settle()
    assert writable == [False, True]  # once all of it has gone
    assert len(gate.sent) == 1 + batches * 8
    assert all(m == {"type": "websocket.send", "text": frame.decode()} for m in gate.sent)


async def test_plain_closes_after_what_was_written_and_then_refuses_writes() -> None:
    gate = _Gate()
    gate.open.set()
    sock = plain.PlainSocket(gate.send)
    closing: list[bool] = []
    sock.on_closing = lambda: closing.append(sock.write_frames([b'{"last":1}']))
    assert sock.write_frames([b'{"first":1}'])
    sock.close(4401, "bye")
    assert closing == [True]  # what `on_closing` writes still goes, before the close
    assert not sock.write_frames([b'{"late":1}'])
    await _settle()
    assert gate.sent == [
        {"type": "websocket.send", "text": '{"first":1}'},
        {"type": "websocket.send", "text": '{"last":1}'},
        {"type": "websocket.close", "code": 4401, "reason": "bye"},
    ]


async def test_plain_holds_reading_and_reports_the_end_once() -> None:
    inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    receives = 0

    async def receive() -> dict[str, Any]:
        nonlocal receives
        receives += 1
        return await inbox.get()

    sock = plain.PlainSocket(_Gate().send)
    frames: list[str | bytes] = []
    closed: list[bool] = []

    def on_frame(data: str | bytes) -> None:
        frames.append(data)
        if data == "hold":
            sock.hold_reading(True)

    sock.on_frame = on_frame
    sock.on_closed = lambda: closed.append(True)
    running = asyncio.ensure_future(sock.run(receive))
    for text in ("a", "hold", "b"):
        inbox.put_nowait({"type": "websocket.receive", "text": text})
    await _settle()
    assert frames == ["a", "hold"] and receives == 2  # held: "b" is not asked for
    sock.hold_reading(False)
    await _settle()
    assert frames == ["a", "hold", "b"]
    inbox.put_nowait({"type": "websocket.receive", "bytes": b"\x00"})
    inbox.put_nowait({"type": "websocket.disconnect", "code": 1000})
    await asyncio.wait_for(running, 10)
    assert frames[-1] == b"\x00" and closed == [True]
    assert sock.on_frame is None and sock.on_closed is None  # no cycle through the endpoint


async def test_plain_reads_on_after_its_close_even_when_held() -> None:
    """The peer's answer to kefu's close must be read, or the socket would never end."""
    inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    sent: list[dict[str, Any]] = []

    async def send(message: Any) -> None:  # as uvicorn: once kefu's close is sent, it is over
        sent.append(dict(message))
        if message["type"] == "websocket.close":
            inbox.put_nowait({"type": "websocket.disconnect", "code": message["code"]})

    sock = plain.PlainSocket(send)
    closed: list[bool] = []
    sock.on_closed = lambda: closed.append(True)
    sock.on_frame = lambda data: sock.hold_reading(True)
    running = asyncio.ensure_future(sock.run(inbox.get))
    inbox.put_nowait({"type": "websocket.receive", "text": "hold"})
    await _settle()
    assert not running.done()  # held
    sock.close(1000)
    await asyncio.wait_for(running, 10)
    assert closed == [True]
    assert sent == [{"type": "websocket.close", "code": 1000, "reason": ""}]


@pytest.fixture
async def echo_app() -> AsyncIterator[plain.ChatApp]:
    async def fallback(scope: Any, receive: Any, send: Any) -> None:
        raise AssertionError("the chat path must not reach the app")

    def open_echo(sock: Any, headers: dict[str, str], peer: str) -> None:
        sock.on_frame = lambda data: sock.write_frames([data.encode()])

    yield plain.ChatApp(fallback, {"/echo": Endpoint(open_echo, lambda h, p: (403, "no"))})


async def test_plain_refuses_with_a_close_where_the_server_has_no_http_response(
    echo_app: plain.ChatApp,
) -> None:
    """An ASGI server without the `websocket.http.response` extension answers a close with 403."""
    gate = _Gate()
    gate.open.set()
    inbox = [{"type": "websocket.connect"}]

    async def receive() -> dict[str, Any]:
        return inbox.pop(0)

    scope = {"type": "websocket", "path": "/echo", "headers": [], "client": ("10.0.0.1", 1)}
    await echo_app(scope, receive, gate.send)
    assert gate.sent == [{"type": "websocket.close", "code": 1008}]
