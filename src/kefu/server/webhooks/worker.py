"""The delivery worker: one per deployment (the node, or the cluster's leader).

It loops over the steps of `store/webhooks.py`: fan the outbox out into
deliveries, record the attempts that finished, start the due deliveries
(at most `concurrency` at once), and now and then repair subjects left
without a pending delivery and prune old finished ones. Every state is in
the database, so a restart or a new leader carries on where it stopped; an
attempt in flight when its worker died is simply made again (delivery is at
least once; the receiver keeps the delivery id to drop repeats).

**Retries.** A failed attempt is tried again after `retry_base` seconds,
doubling each time (at most `MAX_DELAY` apart, each delay varied by +-25% so
failures do not retry in step), until `retry_for` (24 h) after the delivery
was made; then it is `failed` and the next delivery of its subject goes.

**The chat comes first.** The HTTP attempts are made by a process of their
own at a lower priority (`child.py`): an attempt costs some forty times the
CPU of a chat message. What stays here is the database side, on the event
loop that serves the chat sockets; between rounds the worker measures how
late the loop runs a short sleep, and while the loop is busy (late by more
than `BUSY_LAG`) it waits longer and longer (up to `MAX_PAUSE`). Under heavy
load the outbox grows, and is delivered when the load drops; the writer only
ever adds one outbox row per batch of messages.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable
from typing import Protocol

from kefu.server.background import spawn
from kefu.server.metrics import WebhookDeliveries
from kefu.server.webhooks.process import ProcessSender
from kefu.server.webhooks.sender import Attempt
from kefu.store.base import StoreError
from kefu.store.webhooks import KEEP_FINISHED, DueDelivery, Outcome, WebhookQueries

log = logging.getLogger("kefu.webhooks")

CONCURRENCY = 8  # attempts in flight at once
RETRY_FOR = 24 * 3600.0  # seconds a delivery is retried for
MAX_DELAY = 3600.0  # most seconds between two attempts of a delivery
FAN_OUT_EVENTS = 500  # events fanned out per transaction
IDLE_POLL = 0.25  # seconds between looks at the outbox when there is nothing to do
BUSY_LAG = 0.004  # a loop later than this runs chat work: webhooks wait
PROBE = 0.002  # the sleep the lag is measured on
MAX_PAUSE = 2.0
STORE_RETRY = 1.0  # seconds before trying the database again after it failed
REPAIR_EVERY = 60.0
PRUNE_EVERY = 3600.0


class Sends(Protocol):
    """Makes attempts: `ProcessSender` (the sender process), or a `sender.Sender` in process."""

    async def send(self, delivery: DueDelivery) -> Attempt: ...
    async def close(self) -> None: ...


class DeliveryWorker:
    def __init__(
        self,
        store: WebhookQueries,
        new_id: Callable[[], str],
        metrics: WebhookDeliveries,
        *,
        retry_base: float,
        allow_private: bool,
        retry_for: float = RETRY_FOR,
        concurrency: int = CONCURRENCY,
        clock: Callable[[], float] = time.time,
        sender: Sends | None = None,
    ) -> None:
        self.store = store
        self.new_id = new_id
        self.metrics = metrics
        self.retry_base = retry_base
        self.retry_for = retry_for
        self.concurrency = concurrency
        self.clock = clock
        self.sender = sender or ProcessSender(allow_private, concurrency)
        self._flight: dict[str, asyncio.Task[None]] = {}  # delivery id -> its attempt
        self._done: list[Outcome] = []  # attempts finished, not yet recorded
        self._wake = asyncio.Event()
        self._pause = 0.0
        self._repaired = self._pruned = 0.0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Run in a task of its own (`stop` ends it)."""
        self._task = spawn(self.run(), "kefu-webhooks")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def run(self) -> None:
        """Deliver until cancelled."""
        try:
            while True:
                try:
                    busy = await self._round()
                except StoreError as exc:
                    log.warning("webhook deliveries: the database failed (%s); retrying", exc)
                    await asyncio.sleep(STORE_RETRY)
                    continue
                if not busy:
                    self._wake.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), IDLE_POLL)
                await self._yield_to_chat()
        finally:
            flight = list(self._flight.values())
            for task in flight:
                task.cancel()
            await asyncio.gather(*flight, return_exceptions=True)
            await self.sender.close()

    async def _round(self) -> bool:
        """One pass; True if it did anything (so the next one should not wait)."""
        if not (self.store.subscriptions.events or self._flight or self._done):
            return False  # no webhook (as this node last read them): nothing to look at
        now = self.clock()
        if now - self._repaired >= REPAIR_EVERY:
            repaired = await self.store.repair_deliveries(now)
            if repaired:
                log.warning("webhook deliveries: %d subjects had none pending; freed", repaired)
            self._repaired = now
        if now - self._pruned >= PRUNE_EVERY:
            await self.store.prune_deliveries(now - KEEP_FINISHED)
            self._pruned = now
        busy = False
        if self._done:
            done, self._done = self._done, []
            try:
                await self.store.record_deliveries(done)
            except BaseException:
                self._done[:0] = done  # recorded with the next ones
                raise
            busy = True
        if await self.store.fan_out(self.new_id, now, FAN_OUT_EVENTS):
            busy = True
        free = self.concurrency - len(self._flight)
        if free > 0:
            due = await self.store.due_deliveries(now, free, list(self._flight))
            for delivery in due:
                task = asyncio.get_running_loop().create_task(self._attempt(delivery))
                self._flight[delivery.id] = task
            busy = busy or bool(due)
        return busy

    async def _attempt(self, delivery: DueDelivery) -> None:
        try:
            attempt = await self.sender.send(delivery)
        except Exception as exc:  # a bug in sending: count it as a failed attempt
            log.error("webhook delivery %s: attempt failed", delivery.id, exc_info=exc)
            attempt = Attempt(False, error=f"internal error ({type(exc).__name__})")
        finally:
            self._flight.pop(delivery.id, None)
        self._done.append(self.outcome(delivery, attempt))
        self._wake.set()

    def outcome(self, delivery: DueDelivery, attempt: Attempt) -> Outcome:
        """What to record for `attempt`: delivered, retried later, or given up on."""
        now = self.clock()
        if attempt.ok:
            self.metrics.count("delivered")
            return Outcome(delivery, True, now, attempt.status)
        deadline = delivery.created_at + self.retry_for
        if now >= deadline:
            self.metrics.count("dropped")
            log.warning(
                "webhook %s: delivery %s (%s) failed for good after %d attempts; last: %s",
                delivery.webhook_id,
                delivery.id,
                delivery.event,
                delivery.attempts + 1,
                attempt.status if attempt.status is not None else "no answer",
            )
            return Outcome(delivery, False, now, attempt.status, attempt.error, None)
        self.metrics.count("failed")
        delay = min(MAX_DELAY, self.retry_base * 2.0**delivery.attempts)
        delay *= random.uniform(0.75, 1.25)
        next_at = min(now + delay, deadline)
        return Outcome(delivery, False, now, attempt.status, attempt.error, next_at)

    async def _yield_to_chat(self) -> None:
        """Wait while the loop is busy with other work (see the module docstring)."""
        start = time.monotonic()
        await asyncio.sleep(PROBE)
        late = time.monotonic() - start - PROBE
        if late <= BUSY_LAG:
            self._pause = 0.0
            return
        self._pause = min(MAX_PAUSE, max(0.05, self._pause * 2))
        await asyncio.sleep(self._pause)
