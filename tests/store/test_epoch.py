"""The leader epoch fence: a leader's lifecycle writes commit only while its epoch is stored.

Two stores on one database play two nodes: A is the old leader, B the new
one. The contract tests run on SQLite (both writers) and on PostgreSQL; the
tests of a claim and a guarded write that race are PostgreSQL's, where two
nodes really do race.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest

from kefu.core.commands import Dequeue, Enqueue, OpenConversation
from kefu.ids import IdGenerator, id_time
from kefu.store.base import Appended, Fenced, Store, StoreUnavailable
from kefu.store.writer import ClaimEpoch, ThreadWriter

from .conftest import ALICE, BOB, CAROL, DAVE, PostgresHarness, SqliteHarness
from .test_contract import append_all, message, open_conversation

Harness = SqliteHarness | PostgresHarness


@asynccontextmanager
async def node(harness: Harness, **kwargs: Any) -> AsyncIterator[tuple[Store, list[int]]]:
    """A started store, and the epochs its `on_fenced` was called with."""
    kwargs.setdefault("busy_timeout", 30.0)
    store = harness.make(**kwargs)
    fenced: list[int] = []
    store.on_fenced = fenced.append
    await store.start()
    try:
        yield store, fenced
    finally:
        await store.close()


async def until(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        assert loop.time() < deadline, "timed out"
        await asyncio.sleep(0.01)


@asynccontextmanager
async def one_batch(store: Store, harness: Harness) -> AsyncIterator[None]:
    """What the block queues (without yielding to the loop) is one batch, whatever the writer.

    An `AsyncWriter` takes everything queued in one step of the loop; a
    `ThreadWriter` is kept in a batch that waits for the write lock meanwhile.
    """
    writer: Any = store.writer  # type: ignore[attr-defined]
    if not isinstance(writer, ThreadWriter):
        yield
        return
    with harness.block_writes():
        before = writer.stats.batches
        store.write(Dequeue("nobody"))
        await until(lambda: writer.stats.batches > before)
        yield


def stored_epoch(harness: Harness) -> int:
    if isinstance(harness, SqliteHarness):
        with sqlite3.connect(harness.path) as con:
            return int(con.execute("SELECT epoch FROM leader_epoch WHERE id = 1").fetchone()[0])
    return int(harness._sql("SELECT epoch FROM leader_epoch WHERE id = 1"))


def queued(harness: Harness) -> set[str]:
    if isinstance(harness, SqliteHarness):
        with sqlite3.connect(harness.path) as con:
            return {row[0] for row in con.execute("SELECT user_id FROM queue_entries")}
    users = harness._sql("SELECT coalesce(string_agg(user_id, ','), '') FROM queue_entries")
    return set(filter(None, str(users).split(",")))


async def test_a_newer_epoch_fences_the_old_leaders_writes(
    harness: Harness, new_id: IdGenerator
) -> None:
    async with node(harness) as (a, a_fenced), node(harness) as (b, b_fenced):
        for account in (ALICE, BOB, CAROL, DAVE):
            await a.create_account(account)
        assert stored_epoch(harness) == 0  # as migration 0005 left it
        assert await a.claim_epoch(5) is True
        assert stored_epoch(harness) == 5

        # A leads: its guarded records commit
        cid = new_id()
        a.write(OpenConversation(cid, ALICE.id, BOB.id, id_time(cid)), epoch=5)
        a.write(Enqueue(CAROL.id, 10.0), epoch=5)
        await a.flush()
        assert queued(harness) == {CAROL.id}
        assert [c.id for c, _, _ in (await a.load_open_state()).conversations] == [cid]

        # B takes over: A's next guarded batch fails, and the message in it
        assert await b.claim_epoch(6) is True
        first = message(new_id, cid, ALICE.id, BOB.id, "before")
        (stored,) = await asyncio.gather(*append_all(a, [first]))  # a batch of its own
        assert isinstance(stored, Appended)
        async with one_batch(a, harness):
            in_batch = append_all(a, [message(new_id, cid, ALICE.id, BOB.id, "in the batch")])
            a.write(Enqueue(DAVE.id, 11.0), epoch=5)
        with pytest.raises(Fenced) as fenced:
            await a.flush()
        assert fenced.value.epoch == 5
        (lost,) = await asyncio.gather(*in_batch)
        assert isinstance(lost, StoreUnavailable) and isinstance(lost.__cause__, Fenced)
        assert a_fenced == [5] and b_fenced == []
        assert queued(harness) == {CAROL.id}  # DAVE's entry was not written
        assert a.writer.stats.fenced == 1  # type: ignore[attr-defined]

        # A's unguarded messages in other batches still commit
        after = message(new_id, cid, ALICE.id, BOB.id, "after")
        (result,) = await asyncio.gather(*append_all(a, [after]))
        assert isinstance(result, Appended) and result.id == after.id
        assert [m.id for m in await a.messages_after(cid, "")] == [first.id, after.id]

        # the fenced record is never retried; the new leader's records commit
        b.write(Enqueue(DAVE.id, 12.0), epoch=6)
        await b.flush()
        await a.flush()  # nothing fenced since the last flush
        assert queued(harness) == {CAROL.id, DAVE.id}
        assert a_fenced == [5]
        assert (await a.load_open_state()).queue[1].queued_at == 12.0

        # an epoch that is not greater than the stored one changes nothing
        assert await a.claim_epoch(4) is False
        assert await b.claim_epoch(6) is False
        assert stored_epoch(harness) == 6


async def test_on_fenced_once_per_fenced_batch_and_unguarded_records_retried(
    harness: Harness,
) -> None:
    async with node(harness) as (a, a_fenced):
        for account in (ALICE, CAROL):
            await a.create_account(account)
        assert await a.claim_epoch(8)
        for _ in range(2):
            async with one_batch(a, harness):
                a.write(Enqueue(ALICE.id, 1.0), epoch=7)  # older than the stored epoch
                a.write(Enqueue(CAROL.id, 1.0), epoch=7)
            with pytest.raises(Fenced):
                await a.flush()
        assert a_fenced == [7, 7]
        assert queued(harness) == set()
        # a record without an epoch in a fenced batch runs again: it is not the fenced one
        async with one_batch(a, harness):
            a.write(Enqueue(ALICE.id, 2.0))
            a.write(Enqueue(CAROL.id, 2.0), epoch=7)
        with pytest.raises(Fenced):
            await a.flush()
        await a.flush()
        assert queued(harness) == {ALICE.id}
        assert a_fenced == [7, 7, 7]


async def test_a_flush_reports_a_fenced_record_from_an_earlier_batch(harness: Harness) -> None:
    """However the writer batched them: a flush after a guarded record tells if it was fenced."""
    async with node(harness) as (a, a_fenced):
        await a.create_account(ALICE)
        assert await a.claim_epoch(3)
        a.write(Enqueue(ALICE.id, 1.0), epoch=2)
        await until(lambda: a_fenced == [2])  # settled before the flush below is queued
        with pytest.raises(Fenced):
            await a.flush()
        await a.flush()  # and only the first flush after it


async def test_a_claim_queued_before_a_guarded_record_is_made_before_it(
    harness: Harness,
) -> None:
    """`claim_epoch` and then `write(..., epoch)` without waiting: FIFO order, also in one batch."""
    async with node(harness) as (a, a_fenced):
        await a.create_account(ALICE)
        async with one_batch(a, harness):
            claimed = a.writer.call(ClaimEpoch(2))  # type: ignore[attr-defined]
            a.write(Enqueue(ALICE.id, 1.0), epoch=2)
        await a.flush()
        assert await claimed is True
        assert queued(harness) == {ALICE.id} and a_fenced == []


def epoch_statements(statements: list[str]) -> list[str]:
    return [s for s in statements if "leader_epoch" in s]


async def test_one_check_per_epoch_in_a_batch_and_none_without(
    tmp_path: Any, new_id: IdGenerator
) -> None:
    """The statements a batch runs (SQLite's writer on the loop, which can be traced)."""
    harness = SqliteHarness(tmp_path / "kefu.db")
    async with node(harness) as (store, _):
        for account in (ALICE, BOB, CAROL):
            await store.create_account(account)
        cid = await open_conversation(store, new_id, ALICE.id, BOB.id)
        assert await store.claim_epoch(3) and await store.claim_epoch(4)
        con = store.backend._con  # type: ignore[attr-defined]
        statements: list[str] = []
        con.set_trace_callback(statements.append)
        try:
            append_all(store, [message(new_id, cid, ALICE.id, BOB.id, "hi")])
            store.write(Enqueue(CAROL.id, 1.0))
            await store.flush()
            unguarded = list(statements)
            statements.clear()
            store.write(Enqueue(CAROL.id, 2.0), epoch=4)
            append_all(store, [message(new_id, cid, ALICE.id, BOB.id, "hi again")])
            store.write(Enqueue(ALICE.id, 3.0), epoch=4)
            store.write(Dequeue(ALICE.id), epoch=4)
            await store.flush()
        finally:
            con.set_trace_callback(None)
    assert unguarded and epoch_statements(unguarded) == []  # no epoch: no statement
    checks = epoch_statements(statements)
    assert len(checks) == 1 and "epoch = epoch" in checks[0], statements
    first_record = next(i for i, s in enumerate(statements) if "queue_entries" in s)
    assert statements.index(checks[0]) < first_record


# -- PostgreSQL: a claim and a guarded write that race --------------------------------


def waiting(pg: PostgresHarness, *locktypes: str) -> int:
    """Connections to this database waiting for a lock of one of these types."""
    kinds = ", ".join(f"'{k}'" for k in locktypes)
    return int(
        pg._sql(
            "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
            f" WHERE NOT l.granted AND l.locktype IN ({kinds})"
            " AND a.datname = current_database()"
        )
    )


def for_a_table(pg: PostgresHarness) -> int:
    return waiting(pg, "relation")


def for_a_row(pg: PostgresHarness) -> int:
    """Waiting for another transaction's row lock (PostgreSQL waits on that transaction)."""
    return waiting(pg, "transactionid", "tuple")


@pytest.fixture
def pg(postgres_url: str) -> PostgresHarness:
    harness = PostgresHarness(postgres_url)
    harness.reset()
    return harness


async def test_a_claim_waits_for_a_guarded_batch_under_way(pg: PostgresHarness) -> None:
    """The old leader's batch holds the epoch row: the new claim returns after it committed."""
    async with node(pg) as (a, a_fenced), node(pg) as (b, _):
        for account in (ALICE, CAROL):
            await a.create_account(account)
        assert await a.claim_epoch(5)
        with pg.block_writes():
            a.write(Enqueue(ALICE.id, 1.0), epoch=5)  # its check passes, then it waits
            flushed = asyncio.ensure_future(a.flush())
            await until(lambda: for_a_table(pg) == 1)
            claim = asyncio.ensure_future(b.claim_epoch(6))
            await until(lambda: for_a_row(pg) == 1)  # B waits for A's transaction
            assert not claim.done() and not flushed.done()
        await flushed  # A's batch committed, at epoch 5
        assert await claim is True
        assert queued(pg) == {ALICE.id}
        a.write(Enqueue(CAROL.id, 2.0), epoch=5)
        with pytest.raises(Fenced):
            await a.flush()
        assert a_fenced == [5] and queued(pg) == {ALICE.id}


async def test_a_guarded_batch_waits_for_a_claim_under_way_and_is_fenced(
    pg: PostgresHarness,
) -> None:
    """A claim not yet committed: the old leader's check waits for it, then fails."""
    async with node(pg) as (a, a_fenced), node(pg) as (b, _):
        for account in (ALICE, CAROL, DAVE):
            await a.create_account(account)
        assert await a.claim_epoch(5)
        with pg.block_writes():
            # B's batch: the claim (the row is locked), then a record that waits
            claim = b.writer.call(ClaimEpoch(6))  # type: ignore[attr-defined]
            b.write(Enqueue(DAVE.id, 1.0), epoch=6)
            await until(lambda: for_a_table(pg) == 1)
            a.write(Enqueue(CAROL.id, 2.0), epoch=5)
            flushed = asyncio.ensure_future(a.flush())
            await until(lambda: for_a_row(pg) == 1)  # A's check waits for B's transaction
            assert not claim.done() and not flushed.done()
        assert await claim is True
        with pytest.raises(Fenced):
            await flushed
        await b.flush()
        assert a_fenced == [5]
        assert queued(pg) == {DAVE.id}  # CAROL's entry, at epoch 5, never committed
        assert stored_epoch(pg) == 6
