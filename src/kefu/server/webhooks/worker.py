"""The delivery worker: one per deployment (the node, or the cluster's leader).

It works in rounds over the steps of `store/webhooks/`: record the
attempts that finished since the last round, fan the outbox out into
deliveries, and fetch the due deliveries into a small queue; attempts are
started from that queue as others finish (at most `concurrency` at once),
without waiting for a round. Now and then it repairs subjects left without a
pending delivery and prunes old finished deliveries. Every state is in the
database, so a restart or a new leader carries on where it stopped; an
attempt in flight when its worker died is made again (delivery is at least
once; the receiver keeps the delivery id to drop repeats).

**Retries.** A failed attempt is tried again after `retry_base` seconds,
doubling each time (at most `MAX_DELAY` apart, each delay varied by +-25% so
failures do not retry in step), until `retry_for` (24 h) after the delivery
was made; then it is `failed` and the next delivery of its subject goes.

**The chat comes first.** The worker shares the event loop (and, with
SQLite, the database's one write lock) with the chat, so its share is
bounded:

* the HTTP attempts are made by a process of their own at the lowest
  priority (`child.py`): one costs some forty times the CPU of a message;
* a round's database work is small (`FAN_OUT_EVENTS`, `PREFETCH`) and lets
  the loop run between its statements (`store/webhooks/fanout.py`);
* the wait between rounds leaves the worker a share of the time that
  shrinks as the chat gets busier (`pacing.py`).

So under heavy chat load deliveries fall behind (the outbox grows; the
writer only adds one row per batch of messages) and catch up when it eases.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import deque
from collections.abc import Callable
from typing import Protocol

from kefu.server import background
from kefu.server.metrics import WebhookDeliveries
from kefu.server.webhooks.pacing import Pacer
from kefu.server.webhooks.process import ProcessSender
from kefu.server.webhooks.sender import Attempt
from kefu.store.base import StoreError
from kefu.store.webhooks import (
    KEEP_FINISHED,
    PRUNE_ROWS,
    DueDelivery,
    Outcome,
    WebhookQueries,
)

log = logging.getLogger("kefu.webhooks")

CONCURRENCY = 16  # attempts in flight at once
PREFETCH = 16  # due deliveries fetched ahead, attempts in flight included
RETRY_FOR = 24 * 3600.0  # seconds a delivery is retried for
MAX_DELAY = 3600.0  # most seconds between two attempts of a delivery
FAN_OUT_EVENTS = 16  # events fanned out per round (steps of a millisecond or so)
BUDGET = 0.1  # the share of the time the worker may be busy while the chat is idle (pacing)
ROUND_GAP = 0.01  # seconds at least between the starts of two busy rounds
IDLE_POLL = 0.25  # seconds between looks at the outbox when there is nothing to do
STORE_RETRY = 0.2  # seconds before trying the database again after it failed (or was busy)
LOG_EVERY = 60.0  # seconds at least between two warnings that it failed
REPAIR_EVERY = 60.0
PRUNE_EVERY = 60.0  # seconds between prunes, while there is nothing left to prune


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
        self._queue: deque[DueDelivery] = deque()  # fetched, not started yet
        self._flight: dict[str, asyncio.Task[None]] = {}  # delivery id -> its attempt
        self._done: list[Outcome] = []  # attempts finished, not yet recorded
        self._wake = asyncio.Event()
        self.pacer = Pacer(BUDGET, ROUND_GAP)
        self._repaired = self._prune_at = self._warned = 0.0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Run in a task of its own (`stop` ends it)."""
        self._task = background.spawn(self.run(), "kefu-webhooks")

    async def stop(self) -> None:
        task, self._task = self._task, None
        await background.stop(task)

    async def run(self) -> None:
        """Deliver until cancelled."""
        try:
            while True:
                self.pacer.begin()
                held = self.store.worker_busy
                try:
                    busy = await self._round()
                except StoreError as exc:
                    now = time.monotonic()
                    if now - self._warned >= LOG_EVERY:
                        self._warned = now
                        log.warning("webhook deliveries: the database failed (%s); retrying", exc)
                    await asyncio.sleep(STORE_RETRY)
                    continue
                wait = self.pacer.wait(self.store.worker_busy - held)
                if busy:
                    await asyncio.sleep(wait)
                else:
                    self._wake.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), max(wait, IDLE_POLL))
        finally:
            flight = list(self._flight.values())
            for task in flight:
                task.cancel()
            await asyncio.gather(*flight, return_exceptions=True)
            await self.sender.close()
            if self._done:  # what is known already need not be sent again
                with contextlib.suppress(StoreError, TimeoutError):
                    await asyncio.wait_for(self.store.record_deliveries(self._done), 5)
            self.store.close_worker()

    async def _round(self) -> bool:
        """One pass; True if it did anything (so the next one should come soon)."""
        if not (self.store.subscriptions.events or self._flight or self._done or self._queue):
            return False  # no webhook (as this node last read them): nothing to look at
        now = self.clock()
        if now - self._repaired >= REPAIR_EVERY:
            repaired = await self.store.repair_deliveries(now)
            if repaired:
                log.warning("webhook deliveries: %d subjects had none pending; freed", repaired)
            self._repaired = now
        if now >= self._prune_at:  # a little at a time, until nothing is left
            pruned = await self.store.prune_deliveries(now - KEEP_FINISHED, PRUNE_ROWS)
            self._prune_at = now + (ROUND_GAP if pruned >= PRUNE_ROWS else PRUNE_EVERY)
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
        room = PREFETCH - len(self._queue) - len(self._flight)
        if room > 0:
            taken = [*self._flight, *(d.id for d in self._queue)]
            due = await self.store.due_deliveries(now, room, taken)
            self._queue.extend(due)
            busy = busy or bool(due)
        self._dispatch()
        return busy or bool(self._flight)

    def _dispatch(self) -> None:
        loop = asyncio.get_running_loop()
        while self._queue and len(self._flight) < self.concurrency:
            delivery = self._queue.popleft()
            self._flight[delivery.id] = loop.create_task(self._attempt(delivery))

    async def _attempt(self, delivery: DueDelivery) -> None:
        try:
            attempt = await self.sender.send(delivery)
        except Exception as exc:  # a bug in sending: count it as a failed attempt
            log.error("webhook delivery %s: attempt failed", delivery.id, exc_info=exc)
            attempt = Attempt(False, error=f"internal error ({type(exc).__name__})")
        finally:
            self._flight.pop(delivery.id, None)
        self._done.append(self.outcome(delivery, attempt))
        self._dispatch()
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
