"""The leader's reading of the event stream, and how far it got.

Nodes append lifecycle events to one stream (`Broker.append_events`); the
leader reads them in order from the last position a leader acked, hands
each batch to its desk, and acks the stream only once the store has
committed what those events decided. A leader that dies therefore loses
no decided queue or conversation change: the events after the last ack are
decided again by the next leader (at least once: a client may get a reply
twice, e.g. a second `connect_queue`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from kefu.broker.base import Broker
from kefu.core import events as e
from kefu.server.cluster.wire import decode_event
from kefu.store.base import Store

log = logging.getLogger("kefu.leader")
T = TypeVar("T")

Handler = Callable[[str, str | None, e.Event], None]  # (origin node, op_id, event)


async def retry(name: str, fn: Callable[[], Awaitable[T]]) -> T:
    """`fn()` until it succeeds (the broker or the database may be down for a while)."""
    delay = 0.05
    while True:
        try:
            return await fn()
        except Exception as exc:
            log.warning("leader %s waiting: %s", name, exc)
        await asyncio.sleep(delay)
        delay = min(delay * 2, 1.0)


class StreamReader:
    def __init__(
        self,
        name: str,
        broker: Broker,
        store: Store,
        handle: Handler,
        after_batch: Callable[[], None],
    ) -> None:
        self._name = name
        self._broker = broker
        self._store = store
        self._handle = handle
        self._after_batch = after_batch
        self.position = "0"
        self._ack_wake = asyncio.Event()
        self._stopped = False

    async def start(self) -> None:
        """Continue where the last leader acked."""
        self.position = await retry(self._name, self._broker.acked_events)

    def stop(self) -> None:
        self._stopped = True

    async def read(self) -> None:
        """Read and handle events until stopped."""
        delay = 0.05
        while not self._stopped:
            try:
                entries = await self._broker.read_events(self.position, block_ms=1000, count=512)
            except Exception as exc:
                log.warning("leader %s: reading events failed: %s", self._name, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 1.0)
                continue
            delay = 0.05
            if not entries or self._stopped:
                continue
            for _entry_id, data in entries:
                try:
                    origin, op_id, event = decode_event(data)
                except Exception:
                    log.exception("undecodable event dropped")
                    continue
                self._handle(origin, op_id, event)
            self.position = entries[-1][0]
            self._after_batch()
            self._ack_wake.set()

    async def ack(self) -> None:
        """Ack the stream once the store has committed what the events decided."""
        while not self._stopped:
            await self._ack_wake.wait()
            self._ack_wake.clear()
            target = self.position
            try:
                await self._store.flush()
                await self._broker.ack_events(target)
            except Exception as exc:
                log.warning("leader %s: ack failed: %s", self._name, exc)
                self._ack_wake.set()
                await asyncio.sleep(0.5)
            await asyncio.sleep(0.02)
