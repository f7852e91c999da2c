"""The group-commit writer on a dedicated thread, for blocking database drivers (stdlib sqlite3).

The thread takes the first item of the FIFO, drains whatever else is already
queued (at most `max_batch` items), has the backend run the batch's ops in
one transaction, and then schedules **one** callback on the event loop
(`call_soon_threadsafe`) that settles the batch's items in submission order.
There is no timer: under light load a batch is a single item, under heavy
load batches grow by themselves. The batching and failure policy are those of
the package docstring (`kefu.store.writer`).

Limits: `append`, `write`, `call` and `flush` must be called from the event
loop thread that ran `start`. The FIFO is unbounded: backpressure is the
caller's. Items submitted after `stop` fail at once.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections.abc import Callable
from functools import partial
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
    settle,
)
from kefu.store.writer.ops import BatchBackend

log = logging.getLogger("kefu.store.writer")

RETRY_CAP = 2.0  # most seconds between two runs of a failed batch's records


class ThreadWriter:
    """The group-commit writer on a thread of its own."""

    def __init__(
        self,
        backend: BatchBackend,
        *,
        max_batch: int = 512,
        max_attempts: int = 6,
        name: str = "kefu-store-writer",
    ) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self.batches = Batches(max_attempts)
        self.stats: WriterStats = self.batches.stats
        self._backend = backend
        self._max_batch = max_batch
        self._name = name
        self._queue: queue.SimpleQueue[Item] = queue.SimpleQueue()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._closed = False

    @property
    def on_fenced(self) -> Callable[[int], None] | None:
        return self.batches.on_fenced

    @on_fenced.setter
    def on_fenced(self, callback: Callable[[int], None] | None) -> None:
        self.batches.on_fenced = callback

    # -- loop side ----------------------------------------------------------
    async def start(self) -> None:
        """Start the thread and open the backend there; raises what `open` raised."""
        if self._thread is not None:
            raise RuntimeError("writer already started")
        self._loop = loop = asyncio.get_running_loop()
        ready: asyncio.Future[None] = loop.create_future()
        self._thread = threading.Thread(
            target=self._main, args=(ready,), name=self._name, daemon=True
        )
        self._thread.start()
        try:
            await ready
        except BaseException:
            self._closed = True
            # if we were cancelled the thread may be running: let it end and close
            self._queue.put(self.batches.marker(loop.create_future(), stop=True))
            raise

    def append(self, message: NewMessage, done: AppendDone) -> None:
        if self._closed or self._loop is None:
            self._fail_now(done)
            return
        self._queue.put((message, done))

    def write(self, record: LifecycleWrite, epoch: int | None = None) -> None:
        if self._closed or self._loop is None:
            raise StoreUnavailable("store is not running")
        self._queue.put(self.batches.record(record, epoch))

    def call(self, op: CallOp) -> asyncio.Future[Any]:
        """Queue `op`; the future gets the backend's result or `StoreUnavailable`."""
        loop = self._running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._queue.put(Call(op, future))
        return future

    async def flush(self) -> None:
        """Return once everything queued before is settled; raise if its batch failed."""
        future: asyncio.Future[Any] = self._running_loop().create_future()
        self._queue.put(self.batches.marker(future, stop=False))
        await future

    async def stop(self) -> None:
        """Settle everything queued, then stop the thread and close the backend."""
        if self._closed or self._loop is None or self._thread is None:
            self._closed = True
            return
        self._closed = True
        marker: asyncio.Future[Any] = self._loop.create_future()
        self._queue.put(self.batches.marker(marker, stop=True))
        await asyncio.to_thread(self._thread.join)
        await asyncio.sleep(0)  # let the last batch's callbacks run
        if marker.done() and not marker.cancelled() and marker.exception() is not None:
            log.error("store closed with unsaved writes: %r", marker.exception())

    def _running_loop(self) -> asyncio.AbstractEventLoop:
        if self._closed or self._loop is None:
            raise StoreUnavailable("store is not running")
        return self._loop

    def _fail_now(self, done: AppendDone) -> None:
        err = StoreUnavailable("store is not running")
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon(done, err)
        else:
            done(err)

    # -- writer thread ------------------------------------------------------
    def _main(self, ready: asyncio.Future[None]) -> None:
        try:
            self._backend.open()
        except BaseException as exc:
            self._post([(partial(settle, ready), exc)])
            return
        self._post([(partial(settle, ready), None)])
        carry: list[Item] = []
        batches = self.batches
        try:
            while not batches.stopping:
                batch = carry or [self._queue.get()]
                self._drain(batch)
                try:
                    calls, carry = self._process(batch)
                except Exception as exc:  # a bug here must not kill the writer
                    calls, carry = batches.broken(batch, exc), []
                self._post(calls)
                if carry:
                    time.sleep(retry_delay(carry, RETRY_CAP))
        finally:
            try:
                self._backend.close()
            except Exception:
                log.exception("closing the store backend failed")

    def _drain(self, batch: list[Item]) -> None:
        get = self._queue.get_nowait
        cap = self._max_batch
        try:
            while len(batch) < cap:
                batch.append(get())
        except queue.Empty:
            pass

    def _process(self, batch: list[Item]) -> tuple[list[Callback], list[Item]]:
        batches = self.batches
        ops, checks = batches.begin(batch)
        if not ops:
            return batches.committed(batch, ops, [], False), []
        backend = self._backend
        try:
            results = backend.execute(ops, False)
        except Exception as exc:
            if not backend.is_item_error(exc):
                return batches.failed(batch, exc)
            batches.stats.isolated += 1
            try:
                results = backend.execute(ops, True)
            except Exception as exc2:
                return batches.failed(batch, exc2)
        return batches.committed(batch, ops, results, checks), []

    def _post(self, calls: list[Callback]) -> None:
        loop = self._loop
        if not calls or loop is None:
            return
        try:
            loop.call_soon_threadsafe(run_callbacks, loop, calls)
        except RuntimeError:  # the loop is closed: nobody is left to tell
            log.warning("event loop closed; %d store callbacks dropped", len(calls))
