"""`Store.ping()`: a real write committed through the writer's FIFO, on every backend."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from kefu.store.base import StoreUnavailable

from .conftest import PostgresHarness, SqliteHarness


@contextmanager
def epoch_row_locked(harness: SqliteHarness | PostgresHarness) -> Iterator[None]:
    """Another connection holds what a ping writes: SQLite's write lock, PostgreSQL's row."""
    if isinstance(harness, SqliteHarness):
        con = sqlite3.connect(harness.path, isolation_level=None)
        con.execute("BEGIN IMMEDIATE")
        try:
            yield
        finally:
            con.execute("ROLLBACK")
            con.close()
        return
    with harness.holding("SELECT epoch FROM leader_epoch WHERE id = 1 FOR UPDATE"):
        yield


async def test_ping_commits_and_fails_while_the_database_takes_no_write(harness: Any) -> None:
    store = harness.make(busy_timeout=0.2)
    await store.start()
    try:
        stats = store.writer.stats
        commits = stats.commits
        await store.ping()
        assert stats.commits == commits + 1  # a transaction of its own, committed
        assert stats.commit_seconds.count == stats.commits  # every commit is timed
        with epoch_row_locked(harness), pytest.raises(StoreUnavailable):
            await asyncio.wait_for(store.ping(), 10)
        await store.ping()  # the lock is gone: writes go through again
        assert stats.commits == commits + 2
    finally:
        await store.close()
    with pytest.raises(StoreUnavailable):
        await store.ping()  # a closed store is not ready
