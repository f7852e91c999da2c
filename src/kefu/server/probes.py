"""Health probes for load balancers and orchestrators: `GET /healthz` and `GET /readyz`.

* `/healthz`: the process and its event loop answer. No I/O: 200
  `{"status": "ok"}` whenever the loop runs this handler at all.
* `/readyz`: this node can do its work now. Each check is bounded by
  `CHECK_TIMEOUT` and they run at once:
  - `store`: the database takes a write: `Store.ping()`, a trivial write
    committed through the writer's FIFO (so a stuck writer fails it too);
  - in a cluster, `broker`: Redis answers (one `lease_holder` call) and this
    node's subscription to its channel is up (else frames and orders from
    other nodes do not reach it), and `leader`: some node holds the lease
    (the same call; this node's own lease counts too).
  200 `{"status": "ready", "checks": {...}}` with every check `"ok"`, or 503
  `{"status": "not ready", "checks": {...}}` with a short reason for each
  failed one.

Concurrent probes share one check in flight (a balancer probing every second
while the database hangs queues one ping, not one per probe). Reasons name
the kind of failure, never its details (the probes are public behind a load
balancer); the details are logged once each time readiness changes.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from kefu.broker.base import Broker
from kefu.store.base import Store

log = logging.getLogger("kefu.probes")

CHECK_TIMEOUT = 1.5  # seconds each readiness check may take; balancers wait ~2 s (deploy/)
OK = "ok"
_NO_STORE = {"Cache-Control": "no-store"}

T = TypeVar("T")


class Shared(Generic[T]):
    """One call of `work` at a time; callers that come while it runs wait for the same result."""

    def __init__(self, work: Callable[[], Awaitable[T]]) -> None:
        self._work = work
        self._running: asyncio.Future[T] | None = None

    async def __call__(self, timeout: float) -> T:
        running = self._running
        if running is None or running.done():
            running = self._running = asyncio.ensure_future(self._work())
            running.add_done_callback(_retrieve)
        async with asyncio.timeout(timeout):
            return await asyncio.shield(running)


def _retrieve(future: asyncio.Future[Any]) -> None:
    """Mark an outcome nobody waited for as seen (no 'exception never retrieved' warning)."""
    if not future.cancelled():
        future.exception()


class Readiness:
    """The checks behind `/readyz`: the store, and in a cluster the broker and a leader."""

    def __init__(
        self,
        store: Store,
        broker: Broker | None = None,
        leading: Callable[[], bool] = lambda: False,
        listening: Callable[[], bool] = lambda: True,
        timeout: float = CHECK_TIMEOUT,
    ) -> None:
        self.timeout = timeout
        self._ping = Shared(store.ping)
        self._holder = Shared(broker.lease_holder) if broker is not None else None
        self._leading = leading
        self._listening = listening
        self._last: dict[str, str] | None = None

    async def check(self) -> dict[str, str]:
        """Every check's outcome: `"ok"`, or why not."""
        if self._holder is None:
            checks = {"store": await self._store()}
        else:
            store, (broker, leader) = await asyncio.gather(self._store(), self._cluster())
            checks = {"store": store, "broker": broker, "leader": leader}
        self._changed(checks)
        return checks

    async def _store(self) -> str:
        try:
            await self._ping(self.timeout)
        except TimeoutError:
            return f"no write committed within {self.timeout:g} s"
        except Exception as exc:
            self._detail("store", exc)
            return f"write failed ({type(exc).__name__})"
        return OK

    async def _cluster(self) -> tuple[str, str]:
        assert self._holder is not None
        try:
            holder = await self._holder(self.timeout)
        except TimeoutError:
            why = f"no answer within {self.timeout:g} s"
            return why, OK if self._leading() else "unknown: the broker does not answer"
        except Exception as exc:
            self._detail("broker", exc)
            why = f"unreachable ({type(exc).__name__})"
            return why, OK if self._leading() else "unknown: the broker does not answer"
        broker = OK if self._listening() else "not subscribed to this node's channel"
        if holder is None and not self._leading():
            return broker, "no node holds the lease"
        return broker, OK

    def _detail(self, check: str, exc: BaseException) -> None:
        if self._last is None or self._last.get(check) == OK:
            log.warning("readiness: %s check failed: %r", check, exc)

    def _changed(self, checks: dict[str, str]) -> None:
        last, self._last = self._last, checks
        ready = all(v == OK for v in checks.values())
        if last is None:
            if not ready:
                log.warning("not ready: %s", _failed(checks))
            return
        if ready != all(v == OK for v in last.values()):
            if ready:
                log.warning("ready again")
            else:
                log.warning("not ready: %s", _failed(checks))


def _failed(checks: dict[str, str]) -> str:
    return "; ".join(f"{k}: {v}" for k, v in checks.items() if v != OK)


async def healthz(request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"}, headers=_NO_STORE)


def probe_routes(readiness: Readiness) -> list[Route]:
    async def readyz(request: Request) -> JSONResponse:
        checks = await readiness.check()
        if all(v == OK for v in checks.values()):
            return JSONResponse({"status": "ready", "checks": checks}, headers=_NO_STORE)
        body = {"status": "not ready", "checks": checks}
        return JSONResponse(body, status_code=503, headers=_NO_STORE)

    return [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
    ]
