"""The group-commit writer as an asyncio task, for asyncio drivers (asyncpg) and on-loop SQLite.

Same FIFO, batching and failure policy as `ThreadWriter` (see the package
docstring, `kefu.store.writer`): the first queued item plus whatever else is
queued (at most `max_batch`) runs as one transaction; after the commit every
item of the batch is settled, in submission order, on the loop. Only the
driving differs: the backend's methods are coroutines and the writer is one
task, woken by an `asyncio.Event`, instead of a thread.

Pacing: a batch starts at most once per `commit_interval` (1 ms by default)
unless a full batch is already waiting. Each commit has a fixed cost (for
SQLite, the WAL pages of every B-tree it touched), so at a moderate rate
single-message commits would cost more CPU per message than the batches of a
saturated server, and that CPU is what queues the next messages. Waiting for
the rest of the interval lets one commit carry what arrives meanwhile: an ack
may come up to one interval later, in exchange for a server that stays far
from saturation. An item that arrives after a quiet interval is committed at
once.

Limits: all methods must be called on the loop that ran `start`. The FIFO is
unbounded (backpressure is the caller's). Lifecycle records of a batch that
failed as a whole are retried with exponential backoff (at most `retry_cap`
seconds apart) up to `max_attempts` runs; new items queued meanwhile join the
retried batch, so while the database is down messages get `StoreUnavailable`
within about `retry_cap` seconds instead of waiting.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable
from typing import Any

from kefu.store.base import AppendDone, LifecycleWrite, NewMessage, StoreUnavailable
from kefu.store.writer.batches import Batches
from kefu.store.writer.items import (
    Call,
    Callback,
    CallOp,
    Item,
    WriterStats,
    retry_delay,
    run_callbacks,
)
from kefu.store.writer.ops import AsyncBatchBackend

log = logging.getLogger("kefu.store.writer")


class AsyncWriter:
    """The group-commit writer as one task on the event loop."""

    def __init__(
        self,
        backend: AsyncBatchBackend,
        *,
        max_batch: int = 512,
        max_attempts: int = 6,
        retry_cap: float = 2.0,
        commit_interval: float = 0.001,
    ) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self.batches = Batches(max_attempts)
        self.stats: WriterStats = self.batches.stats
        self._interval = commit_interval
        self._backend = backend
        self._max_batch = max_batch
        self._retry_cap = retry_cap
        self._queue: deque[Item] = deque()
        self._wake = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    @property
    def on_fenced(self) -> Callable[[int], None] | None:
        return self.batches.on_fenced

    @on_fenced.setter
    def on_fenced(self, callback: Callable[[int], None] | None) -> None:
        self.batches.on_fenced = callback

    # -- submitting ---------------------------------------------------------------
    async def start(self) -> None:
        """Open the backend and start the writer task; raises what `open` raised."""
        if self._task is not None:
            raise RuntimeError("writer already started")
        try:
            await self._backend.open()
        except BaseException:
            self._closed = True
            raise
        self._loop = loop = asyncio.get_running_loop()
        self._task = loop.create_task(self._main(), name="kefu-store-writer")

    def _put(self, item: Item) -> None:
        self._queue.append(item)
        self._wake.set()

    def append(self, message: NewMessage, done: AppendDone) -> None:
        if self._closed or self._loop is None:
            err = StoreUnavailable("store is not running")
            if self._loop is not None and not self._loop.is_closed():
                self._loop.call_soon(done, err)
            else:
                done(err)
            return
        self._put((message, done))

    def write(self, record: LifecycleWrite, epoch: int | None = None) -> None:
        if self._closed or self._loop is None:
            raise StoreUnavailable("store is not running")
        self._put(self.batches.record(record, epoch))

    def call(self, op: CallOp) -> asyncio.Future[Any]:
        """Queue `op`; the future gets the backend's result or `StoreUnavailable`."""
        future: asyncio.Future[Any] = self._running_loop().create_future()
        self._put(Call(op, future))
        return future

    async def flush(self) -> None:
        """Return once everything queued before is settled; raise if its batch failed."""
        future: asyncio.Future[Any] = self._running_loop().create_future()
        self._put(self.batches.marker(future, stop=False))
        await future

    async def stop(self) -> None:
        """Settle everything queued, then end the task and close the backend."""
        if self._closed or self._loop is None or self._task is None:
            self._closed = True
            return
        self._closed = True
        marker: asyncio.Future[Any] = self._loop.create_future()
        self._put(self.batches.marker(marker, stop=True))
        try:
            await self._task
        finally:
            with contextlib.suppress(Exception):
                await self._backend.close()
        if marker.done() and not marker.cancelled() and marker.exception() is not None:
            log.error("store closed with unsaved writes: %r", marker.exception())

    def _running_loop(self) -> asyncio.AbstractEventLoop:
        if self._closed or self._loop is None:
            raise StoreUnavailable("store is not running")
        return self._loop

    # -- the writer task --------------------------------------------------------------
    async def _main(self) -> None:
        loop = asyncio.get_running_loop()
        batches = self.batches
        carry: list[Item] = []
        started = -self._interval
        while not batches.stopping:
            if not carry and not self._queue:
                self._wake.clear()
                await self._wake.wait()
                continue
            if not carry and len(self._queue) < self._max_batch:
                wait = started + self._interval - loop.time()
                if wait > 0:  # the last batch started less than an interval ago: gather more
                    await asyncio.sleep(wait)
            started = loop.time()
            batch = carry
            queue = self._queue
            while queue and len(batch) < self._max_batch:
                batch.append(queue.popleft())
            try:
                calls, carry = await self._process(batch)
            except Exception as exc:  # a bug here must not kill the writer
                calls, carry = batches.broken(batch, exc), []
            run_callbacks(loop, calls)
            if carry:
                await asyncio.sleep(retry_delay(carry, self._retry_cap))

    async def _process(self, batch: list[Item]) -> tuple[list[Callback], list[Item]]:
        batches = self.batches
        ops, checks = batches.begin(batch)
        if not ops:
            return batches.committed(batch, ops, [], False), []
        backend = self._backend
        try:
            results = await backend.execute(ops, False)
        except Exception as exc:
            if not backend.is_item_error(exc):
                return batches.failed(batch, exc)
            batches.stats.isolated += 1
            try:
                results = await backend.execute(ops, True)
            except Exception as exc2:
                return batches.failed(batch, exc2)
        return batches.committed(batch, ops, results, checks), []
