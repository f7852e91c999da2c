"""The on-loop writer starts a batch at most once per commit interval, unless one is full."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from kefu.store.base import Appended, NewMessage
from kefu.store.writer import AsyncWriter, WriteOp


class Backend:
    def __init__(self) -> None:
        self.batches: list[list[str]] = []

    async def open(self) -> None:
        pass

    async def close(self) -> None:
        pass

    def is_item_error(self, exc: BaseException) -> bool:
        return False

    async def execute(self, ops: Sequence[WriteOp], isolate: bool) -> list[Any]:
        self.batches.append([op.id for op in ops if isinstance(op, NewMessage)])
        return [Appended(op.id, op.created) for op in ops if isinstance(op, NewMessage)]


def _msg(i: int) -> NewMessage:
    return NewMessage(f"{i:020d}", "c", "message_text", "u", "w", b"{}", f"op-{i}", float(i))


def _append(writer: AsyncWriter, i: int) -> asyncio.Future[Any]:
    done: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    writer.append(_msg(i), done.set_result)
    return done


async def test_a_message_after_a_quiet_interval_is_committed_at_once() -> None:
    backend = Backend()
    writer = AsyncWriter(backend, commit_interval=1.0)
    await writer.start()
    await asyncio.wait_for(_append(writer, 0), 5)
    await asyncio.sleep(1.1)  # quiet for longer than the interval
    after = await asyncio.wait_for(_append(writer, 1), 0.5)  # committed without waiting
    assert after.id == f"{1:020d}"
    assert backend.batches == [[f"{0:020d}"], [f"{1:020d}"]]
    await writer.stop()


async def test_messages_soon_after_a_commit_wait_and_share_the_next_one() -> None:
    backend = Backend()
    writer = AsyncWriter(backend, commit_interval=0.5)
    await writer.start()
    await asyncio.wait_for(_append(writer, 0), 5)
    later = [_append(writer, i) for i in (1, 2)]
    await asyncio.sleep(0.2)
    assert not any(f.done() for f in later)  # held until the interval has passed
    await asyncio.wait_for(asyncio.gather(*later), 5)
    assert backend.batches == [[f"{0:020d}"], [f"{1:020d}", f"{2:020d}"]]
    await writer.stop()


async def test_a_full_batch_does_not_wait() -> None:
    backend = Backend()
    writer = AsyncWriter(backend, max_batch=4, commit_interval=1.0)
    await writer.start()
    await asyncio.wait_for(_append(writer, 0), 5)
    full = [_append(writer, i) for i in range(1, 5)]
    await asyncio.wait_for(asyncio.gather(*full), 0.5)  # well before the interval is over
    assert backend.batches[1] == [f"{i:020d}" for i in range(1, 5)]
    await writer.stop()
