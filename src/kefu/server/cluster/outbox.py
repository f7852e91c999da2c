"""Ordered, batched delivery through the broker, retried while it cannot be delivered.

A cluster node keeps one `Outbox` per destination (a node's channel, or the
event stream): `push` never blocks; one task per outbox sends everything
queued in one broker call (at most `BATCH` items), in order. A failed or
unheard send is retried with capped exponential backoff (20 ms doubling, at
most 1 s apart) until `give_up(seconds failing)` says to drop that batch.

Limits: at most `OUTBOX_MAX` items are kept; beyond that the oldest are
dropped (and logged), so a long broker outage costs memory, not the node.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable

from kefu.broker.base import BrokerError

log = logging.getLogger("kefu.cluster")

OUTBOX_MAX = 100_000
BATCH = 1024


class Outbox:
    """Ordered, batched delivery through the broker, retried with capped backoff.

    One task per outbox; `send(batch)` returns False when nothing took it.
    """

    def __init__(
        self,
        name: str,
        send: Callable[[list[bytes]], Awaitable[bool]],
        give_up: Callable[[float], bool],
    ) -> None:
        self.name = name
        self.items: deque[bytes] = deque()
        self.dropped = 0
        self._send = send
        self._give_up = give_up
        self._wake = asyncio.Event()
        self.task = asyncio.get_running_loop().create_task(self._run(), name=name)

    def push(self, data: bytes) -> None:
        if len(self.items) >= OUTBOX_MAX:
            self.items.popleft()
            self.dropped += 1
            if self.dropped % 1000 == 1:
                log.error("%s: full, %d messages dropped", self.name, self.dropped)
        self.items.append(data)
        self._wake.set()

    async def _run(self) -> None:
        delay = 0.02
        failing_since: float | None = None
        items = self.items
        while True:
            if not items:
                self._wake.clear()
                await self._wake.wait()
                continue
            batch = [items.popleft() for _ in range(min(len(items), BATCH))]
            try:
                ok = await self._send(batch)
            except BrokerError as exc:
                ok = False
                if failing_since is None:
                    log.warning("%s: %s", self.name, exc)
            if ok:
                delay, failing_since = 0.02, None
                continue
            now = time.monotonic()
            failing_since = failing_since or now
            if self._give_up(now - failing_since):
                log.warning("%s: %d undeliverable messages dropped", self.name, len(batch))
                failing_since = None
                continue
            items.extendleft(reversed(batch))
            await asyncio.sleep(delay)
            delay = min(delay * 2, 1.0)

    async def stop(self) -> None:
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task
