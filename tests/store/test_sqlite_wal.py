"""The on-loop SQLite writer's WAL stays bounded under steady writes, and holds are safe.

A PASSIVE checkpoint alone never catches up with a writer that keeps
committing, so without the checkpointer's catch-up and restart the WAL file
grows by every frame written. The first test writes over 200 MiB of WAL with
batches back to back and checks, from what the checkpointer's passes saw, that
the WAL started over again and again: no WAL held half of what was written,
and the file never held more than the passes saw. How large the WAL gets
depends on how fast the machine copies it (a clean-clone CI run beside two
busy processes reached 78 MiB where a quiet one stays under 20), so that
figure is measured by `bench/store_bench.py --duration`, not bounded here.
Its slow-disk case makes every checkpoint pass 30 ms longer, so that the
writer outruns the passes and only the growing wait it is given lets the WAL
start over (without it: one WAL of 240 MiB; with it 13-15 MiB, quiet).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from kefu.core.model import Role
from kefu.ids import IdGenerator
from kefu.store.base import Account, Appended, NewMessage
from kefu.store.migrate import upgrade
from kefu.store.sqlite import SqliteBackend, SqliteStore, on_loop
from kefu.store.sqlite import checkpointer as sqlite_store
from kefu.store.sqlite.on_loop import OnTheLoop

from .conftest import ALICE, BOB
from .test_contract import append_all, message, open_conversation

# Small sizes, so that a few seconds of writes go through many restarts.
LIMITS = {
    "WAL_RESTART_BYTES": 2 << 20,
    "WAL_SIZE_LIMIT": 4 << 20,
    "CHECKPOINT_BYTES": 512 << 10,
    "CATCH_UP_BYTES": 512 << 10,
}
DISKS = ["as it is", "slow disk"]
ROWS = 30_000  # each goes into the table and three indexes: over 200 MiB of WAL in all
BATCH = 20
SLOW_PASS = 0.03  # seconds added to every checkpoint pass in the slow-disk case


class Passes:
    """The WAL size each checkpoint pass saw (`Checkpointer._count`, wrapped), and how
    many held passes started the WAL over (`Checkpointer._hold`, wrapped)."""

    def __init__(self, monkeypatch: Any) -> None:
        self.frames: list[int] = []
        self.started_over = 0
        count, hold = sqlite_store.Checkpointer._count, sqlite_store.Checkpointer._hold

        def counting(checkpointer: sqlite_store.Checkpointer, frames: int, done: int) -> None:
            if frames >= 0:  # -1: another connection was checkpointing
                self.frames.append(frames)
            count(checkpointer, frames, done)

        async def holding(checkpointer: sqlite_store.Checkpointer) -> bool:
            wrote = await hold(checkpointer)
            self.started_over += wrote
            return wrote

        monkeypatch.setattr(sqlite_store.Checkpointer, "_count", counting)
        monkeypatch.setattr(sqlite_store.Checkpointer, "_hold", holding)

    def written(self) -> int:
        """WAL frames written in all, as the passes saw the WAL grow and start over."""
        total = last = 0
        for frames in self.frames:
            total += frames - last if frames >= last else frames
            last = frames
        return total

    async def one_more(self, timeout: float = 30.0) -> None:
        """Wait for a pass that began after this call (the one under way may not have)."""
        target = len(self.frames) + 2
        deadline = time.monotonic() + timeout
        while len(self.frames) < target:
            assert time.monotonic() < deadline, "the checkpointer stopped making passes"
            await asyncio.sleep(0.01)


def wal_bytes(db: Path) -> int:
    try:
        return os.stat(str(db) + "-wal").st_size
    except FileNotFoundError:
        return 0


@pytest.mark.parametrize("disk", DISKS)
async def test_sustained_appends_keep_the_wal_file_bounded(
    tmp_path: Path, monkeypatch: Any, disk: str
) -> None:
    for name, value in LIMITS.items():
        monkeypatch.setattr(sqlite_store, name, value)
    if disk == "slow disk":  # every checkpoint pass takes 30 ms longer: the writer outpaces them
        passive = sqlite_store.Checkpointer._passive

        def slow_passive(self: sqlite_store.Checkpointer) -> tuple[int, int]:
            time.sleep(SLOW_PASS)
            return passive(self)

        monkeypatch.setattr(sqlite_store.Checkpointer, "_passive", slow_passive)
    passes = Passes(monkeypatch)
    db = tmp_path / "kefu.db"
    upgrade(f"sqlite:///{db}")
    with sqlite3.connect(db) as con:
        (version,) = con.execute("PRAGMA user_version").fetchone()
        frame_bytes = int(con.execute("PRAGMA page_size").fetchone()[0]) + 24
    store = SqliteStore(f"sqlite:///{db}")
    await store.start()
    new_id = IdGenerator(node=1)
    rng = random.Random(7)
    acked: list[str] = []
    largest = 0
    try:
        waiters = [Account(id=f"w{i}", username=f"waiter{i}", role=Role.WAITER) for i in range(4)]
        users = [Account(id=f"u{i}", username=f"user{i}", role=Role.USER) for i in range(20)]
        for account in waiters + users:
            await store.create_account(account)
        routes = [
            (
                await open_conversation(store, new_id, u.id, waiters[i % 4].id),
                u.id,
                waiters[i % 4].id,
            )
            for i, u in enumerate(users)
        ]
        text = "x" * 300
        for n in range(ROWS // BATCH):
            batch: list[NewMessage] = []
            for _ in range(BATCH):
                cid, user, waiter = rng.choice(routes)
                sender, receiver = (user, waiter) if rng.random() < 0.5 else (waiter, user)
                batch.append(message(new_id, cid, sender, receiver, text, f"{n}-{len(batch)}"))
            results = await asyncio.gather(*append_all(store, batch))
            for m, result in zip(batch, results, strict=True):
                assert isinstance(result, Appended) and result.id == m.id, result
                acked.append(m.id)
            largest = max(largest, wal_bytes(db))
        await store.flush()
        # every acked message is readable through the store while it runs
        read = set()
        for cid, _, _ in routes:
            read |= {m.id for m in await store.messages_after(cid, "0", ROWS)}
        assert read == set(acked)
        await passes.one_more()  # it has seen the last WAL's every frame
        largest = max(largest, wal_bytes(db))
    finally:
        await store.close()
    stats = store.checkpoint_stats
    most, written = max(passes.frames), passes.written()
    figures = (
        f"WAL file up to {largest / (1 << 20):.0f} MiB; the largest WAL held {most} frames "
        f"of {written} written; {passes.started_over} held passes started it over; {stats}"
    )
    # the file held no more than the passes saw: their figures are the WAL's
    assert largest <= 32 + most * frame_bytes, figures  # 32: the WAL header
    assert written * frame_bytes > 100 << 20, figures  # the writes went through the WAL
    # it started over, again and again: no WAL held half of what was written; and the
    # checkpointer's held pass did it (not only the writer after a quiet pass)
    assert stats.restarts >= 2 and passes.started_over >= 1, figures
    assert 2 * most <= written, figures
    with sqlite3.connect(db) as con:
        assert {row[0] for row in con.execute("SELECT id FROM messages")} == set(acked)
        assert con.execute("PRAGMA user_version").fetchone()[0] == version
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def on_the_loop(tmp_path: Path) -> tuple[OnTheLoop, str]:
    """An on-loop writer on a fresh database, and an open conversation in it."""
    db = tmp_path / "kefu.db"
    upgrade(f"sqlite:///{db}")
    with sqlite3.connect(db) as con:
        con.executemany(
            "INSERT INTO accounts (id, username, role, created_at) VALUES (?, ?, ?, 0)",
            [(ALICE.id, ALICE.username, ALICE.role), (BOB.id, BOB.username, BOB.role)],
        )
        con.execute(
            "INSERT INTO conversations (id, user_id, waiter_id, opened_at) VALUES (?, ?, ?, 0)",
            ("c1", ALICE.id, BOB.id),
        )
    return OnTheLoop(SqliteBackend(str(db), "NORMAL", 5.0)), "c1"


def count(tmp_path: Path) -> int:
    with sqlite3.connect(tmp_path / "kefu.db") as con:
        return int(con.execute("SELECT count(*) FROM messages").fetchone()[0])


@contextlib.asynccontextmanager
async def held_writer(
    tmp_path: Path, monkeypatch: Any, hold_timeout: float
) -> AsyncIterator[tuple[OnTheLoop, NewMessage]]:
    """An open on-loop writer with `HOLD_TIMEOUT` set, and a message for it; closed after."""
    monkeypatch.setattr(on_loop, "HOLD_TIMEOUT", hold_timeout)
    writer, cid = on_the_loop(tmp_path)
    await writer.open()
    try:
        yield writer, message(IdGenerator(node=1), cid, ALICE.id, BOB.id, "hi")
    finally:
        await writer.close()


async def test_a_batch_waits_while_the_writer_is_held_and_starts_when_released(
    tmp_path: Path, monkeypatch: Any
) -> None:
    async with held_writer(tmp_path, monkeypatch, 60.0) as (writer, m):
        with writer.held():
            batch = asyncio.ensure_future(writer.execute([m], False))
            for _ in range(20):
                await asyncio.sleep(0.005)
            assert not batch.done()
            assert count(tmp_path) == 0
        (result,) = await batch
        assert isinstance(result, Appended) and result.id == m.id
        assert count(tmp_path) == 1


async def test_a_batch_waits_for_a_hold_at_most_hold_timeout(
    tmp_path: Path, monkeypatch: Any
) -> None:
    async with held_writer(tmp_path, monkeypatch, 0.05) as (writer, m):
        with writer.held():  # never released while the batch runs
            (result,) = await writer.execute([m], False)
            assert isinstance(result, Appended) and result.id == m.id
            assert count(tmp_path) == 1


async def test_an_idle_store_wakes_the_loop_rarely(tmp_path: Path, monkeypatch: Any) -> None:
    """With nothing written, the checkpointer looks at the writer ~10 times a second, not 100.

    (Under writes it still looks every `CHECKPOINT_MIN_INTERVAL`: the first
    test's bound on the WAL depends on it.)
    """
    db = tmp_path / "kefu.db"
    upgrade(f"sqlite:///{db}")
    store = SqliteStore(f"sqlite:///{db}")
    await store.start()
    sleeps = 0
    real_sleep = asyncio.sleep

    async def counting_sleep(delay: float, result: Any = None) -> Any:
        nonlocal sleeps
        sleeps += 1
        return await real_sleep(delay, result)

    try:
        await real_sleep(0.3)  # past the start
        monkeypatch.setattr(asyncio, "sleep", counting_sleep)  # the module the checkpointer uses
        await real_sleep(1.0)
        monkeypatch.undo()
        assert sleeps <= 20, f"{sleeps} sleeps in 1 s of an idle store"
    finally:
        await store.close()
