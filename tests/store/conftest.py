"""Fixtures for the Store contract suite: one `Harness` per implementation.

* sqlite: a fresh file per test.
* postgresql: a fresh database per test session (`CREATE DATABASE
  kefu_test_<random>`, migrated, dropped at the end), emptied before each
  test. Needs a running PostgreSQL (see tests/support/services.py: in CI,
  CI=1/true/yes, a missing server fails the tests instead of skipping them).
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import pytest

from kefu.core.model import Role
from kefu.ids import IdGenerator
from kefu.store.base import Account, Store
from kefu.store.migrate import upgrade
from kefu.store.sqlite import SqliteStore
from support.services import create_database, drop_database, in_thread, require_postgres


class SqliteHarness:
    """SQLite with synchronous=NORMAL (writer on the event loop) or FULL (writer thread)."""

    name = "sqlite"

    def __init__(self, path: Path, synchronous: str = "NORMAL") -> None:
        self.path = path
        self.url = f"sqlite:///{path}"
        self.synchronous = synchronous
        upgrade(self.url)

    def make(self, **kwargs: Any) -> SqliteStore:
        kwargs.setdefault("synchronous", self.synchronous)
        return SqliteStore(self.url, **kwargs)

    def count(self, table: str) -> int:
        with sqlite3.connect(self.path) as con:
            return int(con.execute(f"SELECT count(*) FROM {table}").fetchone()[0])

    @contextmanager
    def block_writes(self) -> Iterator[None]:
        """Hold the database's write lock from another connection."""
        con = sqlite3.connect(self.path, isolation_level=None)
        con.execute("BEGIN IMMEDIATE")
        try:
            yield
        finally:
            con.execute("ROLLBACK")
            con.close()


class PostgresHarness:
    name = "postgresql"

    def __init__(self, url: str) -> None:
        self.url = url

    def make(self, **kwargs: Any) -> Any:
        from kefu.store.postgres import PostgresStore

        return PostgresStore(self.url, **kwargs)

    async def _connect(self) -> Any:
        import asyncpg

        return await asyncpg.connect(self.url, timeout=5)

    def _sql(self, query: str) -> Any:
        async def run() -> Any:
            conn = await self._connect()
            try:
                return await conn.fetchval(query)
            finally:
                await conn.close()

        return in_thread(run)

    def reset(self) -> None:
        self._sql("TRUNCATE messages, queue_entries, queue_exits, conversations, accounts")
        self._sql("UPDATE leader_epoch SET epoch = 0")  # as migration 0005 left it

    def count(self, table: str) -> int:
        return int(self._sql(f"SELECT count(*) FROM {table}"))

    def block_writes(self) -> AbstractContextManager[None]:
        """Hold exclusive locks on the written tables from another connection."""
        tables = "messages, queue_entries, conversations"
        return self.holding(f"LOCK TABLE {tables} IN ACCESS EXCLUSIVE MODE")

    @contextmanager
    def holding(self, statement: str) -> Iterator[None]:
        """Run `statement` in a transaction of another connection, kept open meanwhile."""
        locked, release = threading.Event(), threading.Event()
        errors: list[BaseException] = []

        async def hold() -> None:
            conn = await self._connect()
            try:
                async with conn.transaction():
                    await conn.execute(statement)
                    locked.set()
                    while not release.is_set():
                        await asyncio.sleep(0.01)
            finally:
                await conn.close()

        def main() -> None:
            try:
                asyncio.run(hold())
            except BaseException as exc:
                errors.append(exc)
                locked.set()

        thread = threading.Thread(target=main)
        thread.start()
        locked.wait(10)
        if errors:
            raise errors[0]
        try:
            yield
        finally:
            release.set()
            thread.join()


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A fresh, migrated database for this test session; dropped at the end."""
    require_postgres()
    name, url = create_database()
    try:
        upgrade(url)
        yield url
    finally:
        drop_database(name)


@pytest.fixture(params=["sqlite", "sqlite-full", "postgresql"])
def harness(request: pytest.FixtureRequest, tmp_path: Path) -> SqliteHarness | PostgresHarness:
    if request.param == "sqlite":
        return SqliteHarness(tmp_path / "kefu.db")
    if request.param == "sqlite-full":
        return SqliteHarness(tmp_path / "kefu.db", "FULL")
    pg = PostgresHarness(request.getfixturevalue("postgres_url"))
    pg.reset()
    return pg


@pytest.fixture
async def store(harness: SqliteHarness) -> AsyncIterator[Store]:
    s = harness.make()
    await s.start()
    yield s
    await s.close()


@pytest.fixture
def new_id() -> IdGenerator:
    return IdGenerator(node=1)


ALICE = Account(id="u-alice", username="alice", role=Role.USER, nickname="Alice", avatar="a.png")
CAROL = Account(id="u-carol", username="carol", role=Role.USER)
BOB = Account(id="w-bob", username="bob", role=Role.WAITER, nickname="Bob", password_hash="h1")
DAVE = Account(id="w-dave", username="dave", role=Role.WAITER)


@pytest.fixture
async def people(store: Store) -> dict[str, Account]:
    for account in (ALICE, CAROL, BOB, DAVE):
        await store.create_account(account)
    return {"alice": ALICE, "carol": CAROL, "bob": BOB, "dave": DAVE}
