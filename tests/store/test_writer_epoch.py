"""The writer's side of the epoch fence, against a fake backend: checks placed, failures settled."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import pytest

from kefu.core.commands import Dequeue, Enqueue
from kefu.store.base import Appended, Fenced, NewMessage, StoreUnavailable
from kefu.store.writer import AsyncWriter, CheckEpoch, ClaimEpoch, SetRate, WriteOp


class EpochBackend:
    """Keeps a leader epoch as a database would: a failed check rolls the whole batch back."""

    def __init__(self) -> None:
        self.epoch = 0
        self.batches: list[list[WriteOp]] = []
        self.committed: list[WriteOp] = []

    async def open(self) -> None:
        pass

    async def close(self) -> None:
        pass

    def is_item_error(self, exc: BaseException) -> bool:
        return False

    async def execute(self, ops: Sequence[WriteOp], isolate: bool) -> list[Any]:
        self.batches.append(list(ops))
        epoch, results = self.epoch, list[Any]()
        for op in ops:
            if isinstance(op, CheckEpoch) and op.epoch != epoch:
                raise Fenced(op.epoch)
            if isinstance(op, ClaimEpoch):
                results.append(op.epoch > epoch)
                epoch = max(epoch, op.epoch)
            elif isinstance(op, NewMessage):
                results.append(Appended(op.id, op.created))
            elif isinstance(op, SetRate):
                results.append(True)
            else:
                results.append(None)
        self.epoch = epoch
        self.committed += [op for op in ops if not isinstance(op, CheckEpoch | ClaimEpoch)]
        return results


def msg(i: int) -> NewMessage:
    return NewMessage(f"{i:020d}", "c", "message_text", "u", "w", b"{}", None, float(i))


async def started() -> tuple[AsyncWriter, EpochBackend, list[int]]:
    backend = EpochBackend()
    writer = AsyncWriter(backend)
    fenced: list[int] = []
    writer.on_fenced = fenced.append
    await writer.start()
    return writer, backend, fenced


async def test_one_check_per_epoch_before_its_first_record_and_results_for_the_items() -> None:
    writer, backend, fenced = await started()
    loop = asyncio.get_running_loop()
    claimed = writer.call(ClaimEpoch(4))
    first: asyncio.Future[Any] = loop.create_future()
    writer.append(msg(1), first.set_result)
    writer.write(Enqueue("a", 1.0), epoch=4)
    writer.write(Dequeue("b"))
    writer.write(Enqueue("c", 1.0), epoch=4)
    rated = writer.call(SetRate("x", 3))
    await writer.flush()
    assert backend.batches == [
        [
            ClaimEpoch(4),
            msg(1),
            CheckEpoch(4),
            Enqueue("a", 1.0),
            Dequeue("b"),
            Enqueue("c", 1.0),
            SetRate("x", 3),
        ]
    ]
    assert await claimed is True and await rated is True  # the check's result is nobody's
    assert first.result() == Appended(msg(1).id, 1.0)
    assert fenced == []
    await writer.stop()


async def test_a_fenced_batch_drops_its_guarded_records_and_fails_the_rest() -> None:
    writer, backend, fenced = await started()
    backend.epoch = 9
    loop = asyncio.get_running_loop()
    done: asyncio.Future[Any] = loop.create_future()
    writer.append(msg(1), done.set_result)
    writer.write(Enqueue("guarded", 1.0), epoch=8)
    writer.write(Enqueue("unguarded", 1.0))
    rated = writer.call(SetRate("x", 3))
    with pytest.raises(Fenced) as flushed:
        await writer.flush()
    assert flushed.value.epoch == 8 and fenced == [8]
    assert isinstance(done.result(), StoreUnavailable)
    assert isinstance(done.result().__cause__, Fenced)
    with pytest.raises(StoreUnavailable):
        await rated
    await writer.flush()  # the unguarded record ran again, alone
    assert backend.committed == [Enqueue("unguarded", 1.0)]
    stats = writer.stats
    assert (stats.fenced, stats.dropped, stats.retried, stats.failures) == (1, 1, 1, 1)
    await writer.stop()


async def test_on_fenced_runs_before_the_batchs_other_callbacks() -> None:
    writer, backend, _ = await started()
    backend.epoch = 2
    order: list[str] = []
    writer.on_fenced = lambda epoch: order.append(f"fenced {epoch}")
    writer.write(Enqueue("a", 1.0), epoch=1)
    writer.append(msg(1), lambda result: order.append(type(result).__name__))
    with pytest.raises(Fenced):
        await writer.flush()
    assert order == ["fenced 1", "StoreUnavailable"]
    await writer.stop()


async def test_only_the_records_of_the_fenced_epoch_are_dropped() -> None:
    writer, backend, fenced = await started()
    backend.epoch = 9
    writer.write(Enqueue("old", 1.0), epoch=8)
    writer.write(Enqueue("new", 1.0), epoch=9)  # checked again in the next batch
    with pytest.raises(Fenced):
        await writer.flush()
    await writer.flush()
    assert backend.committed == [Enqueue("new", 1.0)]
    assert fenced == [8]
    await writer.stop()
