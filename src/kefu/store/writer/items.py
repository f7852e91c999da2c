"""The items of the writer's FIFO, and how a batch of them is settled once it ran.

Four kinds of item share one FIFO:

* a message with its `done` callback: a plain tuple (the hot path: no future, no task);
* `Record`: a lifecycle record, with the leader epoch that guards it, if any;
* `Call`: an op whose result is wanted (`SetRate`, `UpsertAccount`, `ClaimEpoch`, `Ping`);
* `Marker`: a flush (or, with `stop`, the writer's end), resolved once everything
  before it is settled.

Records and markers carry a sequence number (`Fences` uses them; messages, the
hot path, do not need one). `settle_success` and `settle_failure` turn a batch
into callbacks, which the writer runs on the event loop with `run_callbacks`,
in submission order.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, TypeAlias

from kefu.histogram import SECONDS_FAST, SIZES, Histogram
from kefu.store.base import AppendDone, Fenced, LifecycleWrite, NewMessage, StoreUnavailable
from kefu.store.writer.ops import ClaimEpoch, Ping, SetRate, UpsertAccount

log = logging.getLogger("kefu.store.writer")

RETRY_FIRST = 0.05  # seconds before a failed batch's records run again; doubles at every try


class Record:
    __slots__ = ("attempts", "epoch", "op", "seq")

    def __init__(self, op: LifecycleWrite, epoch: int | None, seq: int) -> None:
        self.op = op
        self.epoch = epoch
        self.seq = seq
        self.attempts = 0


CallOp: TypeAlias = SetRate | UpsertAccount | ClaimEpoch | Ping


class Call:
    __slots__ = ("future", "op")

    def __init__(self, op: CallOp, future: asyncio.Future[Any]) -> None:
        self.op = op
        self.future = future


class Marker:
    __slots__ = ("future", "seq", "since", "stop")

    def __init__(self, future: asyncio.Future[Any], stop: bool, seq: int, since: int) -> None:
        self.future = future
        self.stop = stop
        self.seq = seq
        self.since = since  # the sequence number of the marker queued before this one


class Fences:
    """The guarded records that were fenced, as far as a flush needs to know.

    A flush fails with `Fenced` if a guarded record queued between the flush
    before it and itself was fenced, in whatever batch: so a leader's flush
    tells whether all its records since its last flush landed. Records settle
    in FIFO order, so the latest fenced one is all there is to remember.
    """

    def __init__(self) -> None:
        self.seq = 0  # the sequence number of the latest fenced record
        self.epoch = 0  # and its epoch

    def fenced(self, record: Record) -> None:
        if record.seq > self.seq:
            self.seq, self.epoch = record.seq, record.epoch or 0

    def error(self, marker: Marker) -> Fenced | None:
        """`Fenced` if a record queued after the marker before `marker` was fenced."""
        return Fenced(self.epoch) if self.seq > marker.since else None


Item: TypeAlias = tuple[NewMessage, AppendDone] | Record | Call | Marker
Callback: TypeAlias = tuple[Callable[[Any], None], Any]


@dataclass(slots=True)
class WriterStats:
    """Counters, updated by the writer (read them for tests and metrics)."""

    batches: int = 0  # batches taken from the FIFO that had at least one op
    commits: int = 0  # transactions committed
    failures: int = 0  # batches rolled back as a whole
    isolated: int = 0  # batches re-run item by item after an item error
    ops: int = 0  # ops handed to the backend, retries and epoch checks included
    largest: int = 0  # most ops in one batch
    retried: int = 0  # lifecycle records put back for another try
    dropped: int = 0  # lifecycle records given up on (fenced ones included)
    fenced: int = 0  # batches rolled back because their leader epoch was superseded
    commit_seconds: Histogram = field(default_factory=lambda: Histogram(SECONDS_FAST))  # per commit
    batch_ops: Histogram = field(default_factory=lambda: Histogram(SIZES))  # ops per batch


def unavailable(exc: BaseException) -> StoreUnavailable:
    """`exc` as the `StoreUnavailable` a message or a call gets (with `exc` as its cause)."""
    if isinstance(exc, StoreUnavailable):
        return exc
    err = StoreUnavailable(f"{type(exc).__name__}: {exc}")
    err.__cause__ = exc
    return err


def settle(future: asyncio.Future[Any], value: Any) -> None:
    """Resolve `future` with `value` (an exception is raised by it), unless its waiter left."""
    if future.done():  # cancelled by its waiter
        return
    if isinstance(value, BaseException):
        future.set_exception(value)
    else:
        future.set_result(value)


def settle_success(batch: Sequence[Item], results: Sequence[Any], fences: Fences) -> list[Callback]:
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
        elif isinstance(item, Record):
            result = results[i]
            i += 1
            if isinstance(result, BaseException):
                log.error("lifecycle record rejected and dropped: %r: %r", item.op, result)
        elif isinstance(item, Call):
            result = results[i]
            i += 1
            if isinstance(result, BaseException):
                result = unavailable(result)
            calls.append((partial(settle, item.future), result))
        else:
            calls.append((partial(settle, item.future), fences.error(item)))
    return calls


def settle_failure(
    batch: Sequence[Item],
    exc: BaseException,
    max_attempts: int,
    stats: WriterStats,
    fences: Fences,
    on_fenced: Callable[[int], None] | None = None,
) -> tuple[list[Callback], list[Item]]:
    """Callbacks for a rolled-back batch, and the items to run again first.

    Messages and calls get `StoreUnavailable`. A record is run again (with the
    markers queued after it) until it has been tried `max_attempts` times. If
    the batch was `Fenced`, its records guarded by that epoch are dropped (a
    newer leader owns that state now: no retry can help; records of another
    epoch or none are run again), its markers but a stop that waits for
    retried records fail with `Fenced`, and `on_fenced(epoch)` is the first
    callback.
    """
    fenced = exc if isinstance(exc, Fenced) else None
    calls: list[Callback] = []
    carry: list[Item] = []
    dropped = 0
    for item in batch:
        if isinstance(item, tuple):
            calls.append((item[1], unavailable(exc)))
        elif isinstance(item, Record):
            item.attempts += 1
            if fenced is not None and item.epoch == fenced.epoch:
                dropped += 1
                fences.fenced(item)
            elif item.attempts < max_attempts:
                stats.retried += 1
                carry.append(item)
            else:
                stats.dropped += 1
                log.error(
                    "lifecycle record dropped after %d tries: %r: %r", item.attempts, item.op, exc
                )
        elif isinstance(item, Call):
            calls.append((partial(settle, item.future), unavailable(exc)))
        elif carry and (fenced is None or item.stop):
            carry.append(item)
        elif fenced is not None:
            calls.append((partial(settle, item.future), Fenced(fenced.epoch)))
        else:
            calls.append((partial(settle, item.future), fences.error(item) or unavailable(exc)))
    if fenced is not None:
        stats.fenced += 1
        stats.dropped += dropped
        log.warning(
            "store batch fenced (leader epoch %d superseded): %d lifecycle records dropped",
            fenced.epoch,
            dropped,
        )
        if on_fenced is not None:
            calls.insert(0, (on_fenced, fenced.epoch))
    return calls, carry


def run_callbacks(loop: asyncio.AbstractEventLoop, calls: list[Callback]) -> None:
    """Run `calls` in order on `loop`; one that raises goes to the loop's exception handler."""
    for fn, arg in calls:
        try:
            fn(arg)
        except Exception as exc:
            loop.call_exception_handler(
                {"message": "store callback failed", "exception": exc, "callback": fn}
            )


def retry_delay(carry: Sequence[Item], cap: float) -> float:
    """Seconds before `carry` runs again: `RETRY_FIRST`, doubling per try, at most `cap`."""
    attempts = max(i.attempts for i in carry if isinstance(i, Record))
    return min(RETRY_FIRST * 2.0 ** (attempts - 1), cap)
