"""The on-loop SQLite writer's WAL stays bounded under steady writes, and holds are safe.

A PASSIVE checkpoint alone never catches up with a writer that keeps
committing, so without the checkpointer's catch-up and restart the WAL file
grows by every frame written. The first test writes several times more WAL
than its bound, with batches back to back, so that only a WAL that starts over
stays under it, whatever the machine's speed; its slow-disk case makes every
checkpoint pass 30 ms longer, so that the writer outruns the passes and only
the growing wait it is given keeps the WAL bounded (without it the WAL never
starts over: 240 MiB; with it 13-15 MiB).
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

from kefu.ids import IdGenerator
from kefu.store import sqlite_loop as sqlite_store
from kefu.store.base import Account, Appended, NewMessage
from kefu.store.migrate import upgrade
from kefu.store.sqlite import SqliteBackend, SqliteStore
from kefu.store.sqlite_loop import OnTheLoop

from .conftest import ALICE, BOB
from .test_contract import append_all, message, open_conversation

# Small sizes, so that a few seconds of writes go through many restarts.
LIMITS = {
    "WAL_RESTART_BYTES": 2 << 20,
    "WAL_SIZE_LIMIT": 4 << 20,
    "CHECKPOINT_BYTES": 512 << 10,
    "CATCH_UP_BYTES": 512 << 10,
}
# The WAL file must stay under these (a restart at 2 MiB, plus a margin). As it
# is: a WAL that never starts over reaches over 200 MiB; one pass stretched by a
# slow fsync (another test's writeback) was seen to let it reach 41 MiB. With
# slow passes: 240 MiB without the growing wait, 13-15 MiB with it.
BOUND = {"as it is": 64 << 20, "slow disk": 48 << 20}
ROWS = 30_000  # each goes into the table and three indexes: over 200 MiB of WAL in all
BATCH = 20
SLOW_PASS = 0.03  # seconds added to every checkpoint pass in the slow-disk case


def wal_bytes(db: Path) -> int:
    try:
        return os.stat(str(db) + "-wal").st_size
    except FileNotFoundError:
        return 0


@pytest.mark.parametrize("disk", list(BOUND))
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
    db = tmp_path / "kefu.db"
    upgrade(f"sqlite:///{db}")
    with sqlite3.connect(db) as con:
        (version,) = con.execute("PRAGMA user_version").fetchone()
    store = SqliteStore(f"sqlite:///{db}")
    await store.start()
    new_id = IdGenerator(node=1)
    rng = random.Random(7)
    acked: list[str] = []
    largest = 0
    try:
        waiters = [Account(id=f"w{i}", username=f"waiter{i}", role="waiter") for i in range(4)]
        users = [Account(id=f"u{i}", username=f"user{i}", role="user") for i in range(20)]
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
    finally:
        await store.close()
    stats = store.checkpoint_stats
    assert largest < BOUND[disk], f"the WAL file reached {largest / (1 << 20):.0f} MiB; {stats}"
    assert stats.restarts > 0 and stats.holds > 0, stats
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
    monkeypatch.setattr(sqlite_store, "HOLD_TIMEOUT", hold_timeout)
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
        monkeypatch.setattr(sqlite_store.asyncio, "sleep", counting_sleep)
        await real_sleep(1.0)
        monkeypatch.undo()
        assert sleeps <= 20, f"{sleeps} sleeps in 1 s of an idle store"
    finally:
        await store.close()
