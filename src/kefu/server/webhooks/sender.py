"""One HTTP attempt of a delivery: a signed POST, 10 s in all, redirects not followed.

`Sender.send` checks the URL's addresses again (`addresses.resolve`),
connects to the first one, POSTs the stored body with the signature headers
(`signing.headers`) and reads only the status: a 2xx within `timeout` is
success; anything else, a redirect too, is a failure with its status, and no
answer is a failure with the reason. The response body is never read.

Connections are kept alive per host (one httpx client each, so a pooled TLS
connection is only reused for the name it was verified for); at most
`MAX_CLIENTS` hosts are kept, the least recently used closed first.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from dataclasses import dataclass

import httpx

from kefu import __version__
from kefu.server.webhooks import signing
from kefu.server.webhooks.addresses import Refused, Target, parse, resolve
from kefu.store.webhooks import DueDelivery

TIMEOUT = 10.0  # seconds for an attempt, from connecting to the status line
MAX_CLIENTS = 32
MAX_LINE = 16 * 1024 * 1024  # bytes of a job or an answer on the sender process's pipes
USER_AGENT = f"kefu-webhooks/{__version__}"


@dataclass(frozen=True, slots=True)
class Attempt:
    ok: bool
    status: int | None = None  # the HTTP status, if there was an answer
    error: str | None = None  # why there was none (or why it was not sent)


class Sender:
    def __init__(self, allow_private: bool, concurrency: int, timeout: float = TIMEOUT) -> None:
        self.allow_private = allow_private
        self.concurrency = concurrency
        self.timeout = timeout
        self._clients: OrderedDict[tuple[str, str, int], httpx.AsyncClient] = OrderedDict()
        self._closing: set[asyncio.Task[None]] = set()

    def _client(self, target: Target) -> httpx.AsyncClient:
        key = (target.scheme, target.host, target.port)
        client = self._clients.pop(key, None)
        if client is None:
            client = httpx.AsyncClient(
                timeout=self.timeout,
                follow_redirects=False,
                trust_env=False,  # no proxy from the environment: the address checked is used
                limits=httpx.Limits(
                    max_connections=self.concurrency, max_keepalive_connections=self.concurrency
                ),
                headers={"User-Agent": USER_AGENT},
            )
            while len(self._clients) >= MAX_CLIENTS:
                _, old = self._clients.popitem(last=False)
                closing = asyncio.get_running_loop().create_task(old.aclose())
                self._closing.add(closing)
                closing.add_done_callback(self._closing.discard)
        self._clients[key] = client
        return client

    async def send(self, delivery: DueDelivery) -> Attempt:
        try:
            target = parse(delivery.url)
            addresses = await resolve(target, self.allow_private)
        except Refused as exc:
            return Attempt(False, error=str(exc))
        body = delivery.body.encode()
        headers = signing.headers(
            delivery.secret, delivery.event, delivery.id, int(time.time()), body
        )
        headers["Host"] = target.host_header
        extensions = {"sni_hostname": target.host} if target.scheme == "https" else {}
        client = self._client(target)
        try:
            async with asyncio.timeout(self.timeout):
                async with client.stream(
                    "POST",
                    target.at(addresses[0]),
                    content=body,
                    headers=headers,
                    extensions=extensions,
                ) as response:
                    status = response.status_code
        except TimeoutError:
            return Attempt(False, error=f"no answer within {self.timeout:g} s")
        except httpx.HTTPError as exc:
            return Attempt(False, error=f"{type(exc).__name__}: {exc}"[:200])
        except OSError as exc:
            return Attempt(False, error=f"{type(exc).__name__}: {exc}"[:200])
        return Attempt(200 <= status < 300, status=status)

    async def close(self) -> None:
        clients = list(self._clients.values())
        self._clients.clear()
        for client in clients:
            await client.aclose()
