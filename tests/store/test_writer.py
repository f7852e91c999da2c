"""The group-commit writer's batching and failure policy, against a fake backend."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from typing import Any

import pytest

from kefu.core.commands import Enqueue
from kefu.store.base import Appended, NewMessage, StoreUnavailable
from kefu.store.writer import SetRate, ThreadWriter, WriteOp


class FakeBackend:
    """Commits into a list; `gate` holds a batch, `fail` makes the next batches fail."""

    def __init__(self) -> None:
        self.committed: list[WriteOp] = []
        self.batch_sizes: list[int] = []
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()
        self.fail = 0
        self.closed = False

    def open(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True

    def is_item_error(self, exc: BaseException) -> bool:
        return isinstance(exc, ValueError)

    def execute(self, ops: Sequence[WriteOp], isolate: bool) -> list[Any]:
        self.entered.set()
        self.gate.wait()
        if self.fail:
            self.fail -= 1
            raise OSError("disk on fire")
        results: list[Any] = []
        done: list[WriteOp] = []
        for op in ops:
            bad = getattr(op, "type", None) == "bad" or getattr(op, "user_id", None) == "bad"
            if bad and not isolate:
                raise ValueError("bad item")
            if bad:
                results.append(ValueError("bad item"))
                continue
            done.append(op)
            if isinstance(op, NewMessage):
                results.append(Appended(op.id, op.created))
            elif isinstance(op, SetRate):
                results.append(op.rate > 0)
            else:
                results.append(None)
        self.committed.extend(done)
        self.batch_sizes.append(len(ops))
        return results


def msg(i: int, type_: str = "message_text") -> NewMessage:
    return NewMessage(f"{i:020d}", "c", type_, "u", "w", b"{}", None, float(i))


def submit(writer: ThreadWriter, messages: list[NewMessage]) -> list[asyncio.Future[Any]]:
    loop = asyncio.get_running_loop()
    futures = []
    for m in messages:
        fut: asyncio.Future[Any] = loop.create_future()
        writer.append(m, fut.set_result)
        futures.append(fut)
    return futures


async def started(backend: FakeBackend, **kwargs: Any) -> ThreadWriter:
    writer = ThreadWriter(backend, **kwargs)
    await writer.start()
    return writer


async def test_drains_everything_queued_into_one_batch() -> None:
    backend = FakeBackend()
    writer = await started(backend, max_batch=10)
    backend.gate.clear()
    first = submit(writer, [msg(0)])
    await asyncio.to_thread(backend.entered.wait)  # the writer holds a batch of one
    rest = submit(writer, [msg(i) for i in range(1, 26)])
    backend.gate.set()
    results = await asyncio.gather(*first, *rest)
    assert [r.id for r in results] == [f"{i:020d}" for i in range(26)]
    assert backend.batch_sizes == [1, 10, 10, 5]
    assert writer.stats.commits == 4 and writer.stats.largest == 10
    await writer.stop()
    assert backend.closed


async def test_failed_batch_fails_messages_and_retries_records() -> None:
    backend = FakeBackend()
    writer = await started(backend)
    backend.gate.clear()
    blocker = submit(writer, [msg(0)])
    await asyncio.to_thread(backend.entered.wait)
    backend.fail = 2  # this batch and the next fail
    m = submit(writer, [msg(1)])
    writer.write(Enqueue("u", 1.0))
    rate = writer.call(SetRate("c", 3))
    flushed = asyncio.ensure_future(writer.flush())
    backend.gate.set()
    assert isinstance((await blocker[0]), StoreUnavailable)
    assert isinstance((await m[0]), StoreUnavailable)
    with pytest.raises(StoreUnavailable):
        await rate
    await flushed  # waits for the retried record
    assert backend.committed == [Enqueue("u", 1.0)]
    assert writer.stats.failures == 2 and writer.stats.retried == 1
    await writer.stop()


async def test_record_dropped_after_max_attempts_and_writer_recovers() -> None:
    backend = FakeBackend()
    writer = await started(backend, max_attempts=2)
    backend.fail = 2
    writer.write(Enqueue("u", 1.0))
    with pytest.raises(StoreUnavailable):
        await writer.flush()
    assert writer.stats.dropped == 1 and backend.committed == []
    (result,) = await asyncio.gather(*submit(writer, [msg(5)]))
    assert result == Appended(msg(5).id, 5.0)
    await writer.flush()
    await writer.stop()


async def test_item_error_isolated() -> None:
    backend = FakeBackend()
    writer = await started(backend)
    backend.gate.clear()
    submit(writer, [msg(0)])
    await asyncio.to_thread(backend.entered.wait)
    futures = submit(writer, [msg(1), msg(2, "bad"), msg(3)])
    writer.write(Enqueue("bad", 1.0))  # logged and dropped
    writer.write(Enqueue("u", 2.0))
    backend.gate.set()
    r1, r2, r3 = await asyncio.gather(*futures)
    await writer.flush()
    assert isinstance(r2, StoreUnavailable) and isinstance(r2.__cause__, ValueError)
    assert [r1.id, r3.id] == [msg(1).id, msg(3).id]
    assert backend.committed == [msg(0), msg(1), msg(3), Enqueue("u", 2.0)]
    assert writer.stats.isolated == 1
    await writer.stop()


async def test_callbacks_in_order_even_if_one_raises() -> None:
    backend = FakeBackend()
    writer = await started(backend)
    loop = asyncio.get_running_loop()
    errors: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _loop, ctx: errors.append(ctx))
    seen: list[int] = []

    def done(i: int, _result: object) -> None:
        seen.append(i)
        if i == 3:
            raise RuntimeError("callback bug")

    for i in range(10):
        writer.append(msg(i), lambda r, i=i: done(i, r))  # type: ignore[misc]
    await writer.flush()
    assert seen == list(range(10))
    assert len(errors) == 1 and isinstance(errors[0]["exception"], RuntimeError)
    loop.set_exception_handler(None)
    await writer.stop()


async def test_stop_waits_for_retried_records() -> None:
    backend = FakeBackend()
    writer = await started(backend)
    backend.fail = 2
    writer.write(Enqueue("u", 1.0))
    await writer.stop()
    assert backend.committed == [Enqueue("u", 1.0)]
    assert backend.closed
    (late,) = await asyncio.gather(*submit(writer, [msg(1)]))
    assert isinstance(late, StoreUnavailable)


async def test_call_result_and_empty_flush() -> None:
    backend = FakeBackend()
    writer = await started(backend)
    await writer.flush()  # nothing queued: no transaction
    assert writer.stats.commits == 0
    assert await writer.call(SetRate("c", 4)) is True
    assert await writer.call(SetRate("c", 0)) is False
    await writer.stop()
    await writer.stop()  # idempotent
