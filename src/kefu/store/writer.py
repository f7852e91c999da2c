"""Group-commit writer: one FIFO, one transaction per batch, one loop wake-up per batch.

Everything written goes through one FIFO of items:

* a message with its `done` callback (the hot path: a tuple, no future, no task);
* a lifecycle record (`Enqueue`, `Dequeue`, `OpenConversation`, `CloseConversation`);
* a call whose result is wanted (`SetRate`): resolves an asyncio future;
* a flush marker: resolves an asyncio future once everything before it is settled.

A dedicated thread takes the first item, drains whatever else is already queued
(at most `max_batch` items, default 512), hands the operations to the backend
to run in **one transaction**, and after the commit schedules **one** callback
on the event loop (`call_soon_threadsafe`) that runs every `done` of the batch
in submission order and resolves its futures. There is no timer: under light
load a batch is a single item, under heavy load batches grow by themselves.

Failure policy (the backend says which errors are whose fault):

* **Item errors** (a constraint or type error caused by one item): the batch is
  run again with one savepoint per item; only the bad items fail, the rest
  commit together. A message that fails gets `StoreUnavailable`; a lifecycle
  record that fails is logged and dropped (retrying it cannot help).
* **Database errors** (locked, read-only, disk full, connection lost): the
  whole batch is rolled back. Every message and call in it gets
  `StoreUnavailable` (clients retry with the same `op_id`, which is idempotent).
  Its lifecycle records are put back at the head of the FIFO, together with
  the flush markers queued after them, and retried with exponential backoff
  (50 ms doubling, at most 2 s between tries) up to `max_attempts` runs in
  all; then they are logged and dropped, and those markers fail. Backend writes
  of lifecycle records must therefore be idempotent.
* A flush marker in a batch that failed gets `StoreUnavailable`.

Limits: `append`, `write`, `call` and `flush` must be called from the event
loop thread given to `start`. The FIFO is unbounded: backpressure is the
caller's (the server bounds each connection's in-flight messages). Items
submitted after `stop` fail at once.

The batching here is independent of the database: a backend only has to run
a list of operations in one transaction (`BatchBackend`). The thread driver
suits blocking drivers (stdlib sqlite3); an asyncio driver for asyncpg can
reuse `settle_success` / `settle_failure`.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, Protocol, TypeAlias

from kefu.store.base import Account, AppendDone, LifecycleWrite, NewMessage, StoreUnavailable

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SetRate:
    """Rate a conversation that has no rating yet; the backend returns True if it did."""

    conversation_id: str
    rate: int


@dataclass(frozen=True, slots=True)
class UpsertAccount:
    """Insert or update an account by id; the backend returns False if the username is taken."""

    account: Account
    now: float


WriteOp: TypeAlias = NewMessage | LifecycleWrite | SetRate | UpsertAccount


class BatchBackend(Protocol):
    """The database side of the writer; all methods run on the writer thread."""

    def open(self) -> None:
        """Connect; raise if the database cannot be used."""

    def execute(self, ops: Sequence[WriteOp], isolate: bool) -> list[Any]:
        """Run `ops` in one transaction and commit; one result per op, in order.

        A `NewMessage` gives an `Appended`, `SetRate` a bool, lifecycle records
        None. With `isolate`, each op runs in its own savepoint and an op that
        fails with an item error gives that exception as its result. On any
        other error: roll back and raise.
        """

    def is_item_error(self, exc: BaseException) -> bool:
        """True if `exc` is the fault of one op (constraint, bad value), not the database's."""

    def close(self) -> None: ...


class _Record:
    __slots__ = ("attempts", "op")

    def __init__(self, op: LifecycleWrite) -> None:
        self.op = op
        self.attempts = 0


class _Call:
    __slots__ = ("future", "op")

    def __init__(self, op: SetRate | UpsertAccount, future: asyncio.Future[Any]) -> None:
        self.op = op
        self.future = future


class _Marker:
    __slots__ = ("future", "stop")

    def __init__(self, future: asyncio.Future[Any], stop: bool) -> None:
        self.future = future
        self.stop = stop


Item: TypeAlias = tuple[NewMessage, AppendDone] | _Record | _Call | _Marker
Callback: TypeAlias = tuple[Callable[[Any], None], Any]


@dataclass(slots=True)
class WriterStats:
    """Counters, updated by the writer thread (read them for tests and metrics)."""

    batches: int = 0  # batches taken from the FIFO that had at least one op
    commits: int = 0  # transactions committed
    failures: int = 0  # batches rolled back as a whole
    isolated: int = 0  # batches re-run item by item after an item error
    ops: int = 0  # ops handed to the backend, retries included
    largest: int = 0  # most ops in one batch
    retried: int = 0  # lifecycle records put back for another try
    dropped: int = 0  # lifecycle records given up on


def message_runs(ops: Sequence[WriteOp]) -> Iterator[list[NewMessage] | WriteOp]:
    """`ops` in order, each run of consecutive messages as one list (one `executemany`)."""
    run: list[NewMessage] = []
    for op in ops:
        if isinstance(op, NewMessage):
            run.append(op)
            continue
        if run:
            yield run
            run = []
        yield op
    if run:
        yield run


def unavailable(exc: BaseException) -> StoreUnavailable:
    if isinstance(exc, StoreUnavailable):
        return exc
    err = StoreUnavailable(f"{type(exc).__name__}: {exc}")
    err.__cause__ = exc
    return err


def _settle(future: asyncio.Future[Any], value: Any) -> None:
    if future.done():  # cancelled by its waiter
        return
    if isinstance(value, BaseException):
        future.set_exception(value)
    else:
        future.set_result(value)


def _op(item: Item) -> WriteOp | None:
    if isinstance(item, tuple):
        return item[0]
    if isinstance(item, _Record | _Call):
        return item.op
    return None


def settle_success(batch: Sequence[Item], results: Sequence[Any]) -> list[Callback]:
    """Callbacks for a committed batch; `results` has one entry per op (markers have none)."""
    calls: list[Callback] = []
    i = 0
    for item in batch:
        if isinstance(item, tuple):
            result = results[i]
            i += 1
            if isinstance(result, BaseException):
                result = unavailable(result)
            calls.append((item[1], result))
        elif isinstance(item, _Record):
            result = results[i]
            i += 1
            if isinstance(result, BaseException):
                log.error("lifecycle record rejected and dropped: %r: %r", item.op, result)
        elif isinstance(item, _Call):
            result = results[i]
            i += 1
            if isinstance(result, BaseException):
                result = unavailable(result)
            calls.append((partial(_settle, item.future), result))
        else:
            calls.append((partial(_settle, item.future), None))
    return calls


def settle_failure(
    batch: Sequence[Item], exc: BaseException, max_attempts: int, stats: WriterStats
) -> tuple[list[Callback], list[Item]]:
    """Callbacks for a rolled-back batch, and the items to run again first."""
    calls: list[Callback] = []
    carry: list[Item] = []
    for item in batch:
        if isinstance(item, tuple):
            calls.append((item[1], unavailable(exc)))
        elif isinstance(item, _Record):
            item.attempts += 1
            if item.attempts < max_attempts:
                stats.retried += 1
                carry.append(item)
            else:
                stats.dropped += 1
                log.error(
                    "lifecycle record dropped after %d tries: %r: %r", item.attempts, item.op, exc
                )
        elif isinstance(item, _Call):
            calls.append((partial(_settle, item.future), unavailable(exc)))
        elif carry:
            carry.append(item)
        else:
            calls.append((partial(_settle, item.future), unavailable(exc)))
    return calls, carry


def _run_calls(loop: asyncio.AbstractEventLoop, calls: list[Callback]) -> None:
    for fn, arg in calls:
        try:
            fn(arg)
        except Exception as exc:
            loop.call_exception_handler(
                {"message": "store callback failed", "exception": exc, "callback": fn}
            )


def retry_delay(carry: Sequence[Item], cap: float) -> float:
    """Seconds to wait before running `carry` again: 50 ms doubling per try, at most `cap`."""
    attempts = max(i.attempts for i in carry if isinstance(i, _Record))
    return min(0.05 * 2.0 ** (attempts - 1), cap)


class BatchSteps:
    """The steps of one batch that `ThreadWriter` and `aiowriter.AsyncWriter` share."""

    stats: WriterStats
    _max_attempts: int
    _stopping: bool

    def _begin(self, batch: list[Item]) -> list[WriteOp]:
        """The batch's ops, counted in `stats`; a stop marker ends the writer after the batch."""
        ops = [op for op in map(_op, batch) if op is not None]
        if any(isinstance(i, _Marker) and i.stop for i in batch):
            self._stopping = True
        if ops:
            stats = self.stats
            stats.batches += 1
            stats.ops += len(ops)
            stats.largest = max(stats.largest, len(ops))
        return ops

    def _failed(self, batch: list[Item], exc: Exception) -> tuple[list[Callback], list[Item]]:
        """The batch was rolled back as a whole: callbacks, and the items to run again."""
        self.stats.failures += 1
        log.warning("store batch of %d items rolled back: %r", len(batch), exc)
        calls, carry = settle_failure(batch, exc, self._max_attempts, self.stats)
        if any(isinstance(i, _Marker) and i.stop for i in carry):
            self._stopping = False  # the stop marker waits for the retried records
        return calls, carry


class ThreadWriter(BatchSteps):
    """The group-commit writer on a dedicated thread, for blocking database drivers."""

    def __init__(
        self,
        backend: BatchBackend,
        *,
        max_batch: int = 512,
        max_attempts: int = 6,
        name: str = "kefu-store-writer",
    ) -> None:
        if max_batch < 1 or max_attempts < 1:
            raise ValueError("max_batch and max_attempts must be at least 1")
        self.stats = WriterStats()
        self._backend = backend
        self._max_batch = max_batch
        self._max_attempts = max_attempts
        self._name = name
        self._queue: queue.SimpleQueue[Item] = queue.SimpleQueue()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._closed = False
        self._stopping = False

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
            self._queue.put(_Marker(loop.create_future(), stop=True))
            raise

    def append(self, message: NewMessage, done: AppendDone) -> None:
        if self._closed or self._loop is None:
            self._fail_now(done)
            return
        self._queue.put((message, done))

    def write(self, record: LifecycleWrite) -> None:
        if self._closed or self._loop is None:
            raise StoreUnavailable("store is not running")
        self._queue.put(_Record(record))

    def call(self, op: SetRate | UpsertAccount) -> asyncio.Future[Any]:
        """Queue `op`; the future gets the backend's result or `StoreUnavailable`."""
        loop = self._running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._queue.put(_Call(op, future))
        return future

    async def flush(self) -> None:
        """Return once everything queued before is settled; raise if its batch failed."""
        future: asyncio.Future[Any] = self._running_loop().create_future()
        self._queue.put(_Marker(future, stop=False))
        await future

    async def stop(self) -> None:
        """Settle everything queued, then stop the thread and close the backend."""
        if self._closed or self._loop is None or self._thread is None:
            self._closed = True
            return
        self._closed = True
        marker: asyncio.Future[Any] = self._loop.create_future()
        self._queue.put(_Marker(marker, stop=True))
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
            self._post([(partial(_settle, ready), exc)])
            return
        self._post([(partial(_settle, ready), None)])
        carry: list[Item] = []
        try:
            while not self._stopping:
                batch = carry or [self._queue.get()]
                self._drain(batch)
                try:
                    calls, carry = self._process(batch)
                except Exception as exc:  # a bug here must not kill the writer
                    log.exception("store writer failed on a batch")
                    calls, carry = settle_failure(batch, exc, 0, self.stats)
                self._post(calls)
                if carry:
                    time.sleep(retry_delay(carry, 2.0))
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
        ops = self._begin(batch)
        if not ops:
            return settle_success(batch, []), []
        backend = self._backend
        try:
            results = backend.execute(ops, False)
        except Exception as exc:
            if not backend.is_item_error(exc):
                return self._failed(batch, exc)
            self.stats.isolated += 1
            try:
                results = backend.execute(ops, True)
            except Exception as exc2:
                return self._failed(batch, exc2)
        self.stats.commits += 1
        return settle_success(batch, results), []

    def _post(self, calls: list[Callback]) -> None:
        loop = self._loop
        if not calls or loop is None:
            return
        try:
            loop.call_soon_threadsafe(_run_calls, loop, calls)
        except RuntimeError:  # the loop is closed: nobody is left to tell
            log.warning("event loop closed; %d store callbacks dropped", len(calls))
