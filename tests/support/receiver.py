"""A real webhook receiver for the tests: a small HTTP/1.1 server on 127.0.0.1.

`Receiver` listens in the test's event loop (start it with `await
receiver.start()`), checks the signature of every POST with the secret it is
given (`receiver.secret = ...`), keeps what it got (`received`, with whether
the signature held) and answers each request with the next status of
`answers` (200 once they are used up). `down()` stops listening and drops its
connections (kefu's attempts then fail to connect); `up()` listens again on
the same port. `wait_for` polls what was received.

It speaks just enough HTTP for kefu's sender (httpx): Content-Length bodies,
keep-alive. Like `support.client`, nothing here imports kefu: the signature
is checked as docs/api.md tells a receiver to.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from support.logscan import remember
from support.servers import free_port


@dataclass
class Received:
    headers: dict[str, str]
    raw: bytes
    signed: bool  # the signature matched the secret
    at: float = field(default_factory=time.monotonic)

    @property
    def body(self) -> dict[str, Any]:
        data = json.loads(self.raw)
        assert isinstance(data, dict), data
        return data

    @property
    def id(self) -> str:
        return str(self.body["id"])

    @property
    def event(self) -> str:
        return str(self.body["event"])

    @property
    def data(self) -> dict[str, Any]:
        data = self.body["data"]
        assert isinstance(data, dict)
        return data


def signature(secret: str, timestamp: str, body: bytes) -> str:
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


class Receiver:
    def __init__(self) -> None:
        self.port = free_port()
        self.secret = ""
        self.received: list[Received] = []
        self.answers: list[int] = []  # statuses to answer, in order; then 200
        self.answer: Callable[[Received], int] | None = None  # or this decides
        self.requests = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/kefu?src=test"

    def use(self, secret: str) -> None:
        self.secret = secret
        remember(secret)  # no server log may hold it

    async def start(self) -> Receiver:
        await self.up()
        return self

    async def up(self) -> None:
        if self._server is None:
            self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)

    async def down(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        if server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 5)

    async def close(self) -> None:
        await self.down()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                headers = {}
                for line in lines[1:]:
                    if ":" in line:
                        name, _, value = line.partition(":")
                        headers[name.strip().lower()] = value.strip()
                raw = await reader.readexactly(int(headers.get("content-length", "0")))
                self.requests += 1
                expected = signature(self.secret, headers.get("x-kefu-timestamp", ""), raw)
                signed = hmac.compare_digest(expected, headers.get("x-kefu-signature", ""))
                got = Received(headers, raw, signed)
                self.received.append(got)
                if self.answers:
                    status = self.answers.pop(0)
                else:
                    status = self.answer(got) if self.answer is not None else 200
                writer.write(f"HTTP/1.1 {status} X\r\nContent-Length: 0\r\n\r\n".encode())
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            pass
        finally:
            self._writers.discard(writer)
            writer.close()

    async def wait_for(
        self, what: str, pred: Callable[[list[Received]], bool], timeout: float = 30.0
    ) -> list[Received]:
        deadline = time.monotonic() + timeout
        while not pred(self.received):
            if time.monotonic() > deadline:
                got = [(r.event, r.id) for r in self.received][-20:]
                raise AssertionError(f"not within {timeout}s: {what}; last received: {got}")
            await asyncio.sleep(0.05)
        return self.received
