"""Fixtures for the Store contract suite: one `Harness` per implementation.

Add PostgreSQL by adding a param and a harness that creates a fresh database,
migrates it and knows how to block writes.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from kefu.ids import IdGenerator
from kefu.store.base import Account, Store
from kefu.store.migrate import upgrade
from kefu.store.sqlite import SqliteStore


class SqliteHarness:
    name = "sqlite"

    def __init__(self, path: Path) -> None:
        self.path = path
        self.url = f"sqlite:///{path}"
        upgrade(self.url)

    def make(self, **kwargs: Any) -> SqliteStore:
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


@pytest.fixture(params=["sqlite"])
def harness(request: pytest.FixtureRequest, tmp_path: Path) -> SqliteHarness:
    if request.param == "sqlite":
        return SqliteHarness(tmp_path / "kefu.db")
    raise NotImplementedError(request.param)


@pytest.fixture
async def store(harness: SqliteHarness) -> AsyncIterator[Store]:
    s = harness.make()
    await s.start()
    yield s
    await s.close()


@pytest.fixture
def new_id() -> IdGenerator:
    return IdGenerator(node=1)


ALICE = Account(id="u-alice", username="alice", role="user", nickname="Alice", avatar="a.png")
CAROL = Account(id="u-carol", username="carol", role="user")
BOB = Account(id="w-bob", username="bob", role="waiter", nickname="Bob", password_hash="h1")
DAVE = Account(id="w-dave", username="dave", role="waiter")


@pytest.fixture
async def people(store: Store) -> dict[str, Account]:
    for account in (ALICE, CAROL, BOB, DAVE):
        await store.create_account(account)
    return {"alice": ALICE, "carol": CAROL, "bob": BOB, "dave": DAVE}
