"""Retention: closed conversations older than `KEFU_RETENTION_DAYS` are deleted.

With their messages, and the queue's departures (`queue_exits`) as old.
One node does it: the single node, or the cluster's leader (both start
`Retention.run` when the setting is on). Each batch is one short
transaction (`Store.purge_batch`: at most `BATCH_CONVERSATIONS`
conversations and `BATCH_ROWS` messages), with `PAUSE` between batches, so
the chat's writer never waits for more than one batch; on SQLite that
writer waits for the write lock without blocking the event loop.

The first check comes `FIRST_CHECK` seconds after the node starts (or
takes the lead), or the interval if that is shorter, then one every
`KEFU_RETENTION_INTERVAL` seconds: nodes that restart more often than the
interval still purge. `kefu purge --older-than DAYS` runs `purge_before`
once from the command line.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from kefu.server import background
from kefu.settings import Settings
from kefu.store.base import Store, StoreError
from kefu.store.records import Purged

log = logging.getLogger("kefu.retention")

DAY = 86_400.0
BATCH_CONVERSATIONS = 500
BATCH_ROWS = 5_000
PAUSE = 0.1  # seconds between two batches
FIRST_CHECK = 60.0


async def purge_before(store: Store, before: float, pause: float = PAUSE) -> Purged:
    """Delete, batch after batch, everything retention drops that is older than `before`."""
    total = Purged()
    while True:
        done = await store.purge_batch(
            before, conversations_max=BATCH_CONVERSATIONS, messages_max=BATCH_ROWS
        )
        if not done.rows:
            return total
        total += done
        await asyncio.sleep(pause)


class Retention:
    """The purge loop of one node (see the module docstring)."""

    def __init__(
        self, store: Store, settings: Settings, clock: Callable[[], float] = time.time
    ) -> None:
        self.store = store
        self.days = settings.retention_days
        self.interval = settings.retention_interval
        self._clock = clock
        self._task: asyncio.Task[None] | None = None

    @property
    def enabled(self) -> bool:
        return self.days > 0

    async def run(self) -> None:
        await asyncio.sleep(min(self.interval, FIRST_CHECK))
        while True:
            await self.check()
            await asyncio.sleep(self.interval)

    async def check(self) -> Purged:
        """Purge what is older than the retention now; a database error waits for the next."""
        before = self._clock() - self.days * DAY
        try:
            done = await purge_before(self.store, before)
        except StoreError as exc:
            log.warning("retention: purge failed, retried in %.0f s: %s", self.interval, exc)
            return Purged()
        if done.rows:
            log.info(
                "retention: deleted %d conversations, %d messages, %d queue records",
                done.conversations,
                done.messages,
                done.queue_exits,
            )
        return done

    def start(self) -> None:
        """Run the loop in a task, if retention is on (one node)."""
        if self.enabled and self._task is None:
            self._task = background.spawn(self.run(), "kefu-retention")

    async def stop(self) -> None:
        task, self._task = self._task, None
        await background.stop(task)
