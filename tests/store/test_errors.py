"""No driver error leaves a store: a database that fails gives `StoreError`s, on every path.

The server catches only `StoreError` (and answers "retry later"); a
`sqlite3.Error`, a SQLAlchemy error or an asyncpg error that got out would
end up as an internal error instead.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import make_url

from kefu.core.model import AccountKind, Role
from kefu.ids import IdGenerator
from kefu.store.base import Account, Store, StoreError, StoreUnavailable
from support.proxy import TcpProxy

from .conftest import ALICE, PostgresHarness, SqliteHarness
from .test_contract import append_all, message

HOST = Account("ext-1", "host-user", Role.USER, kind=AccountKind.EXTERNAL, external_id="ext-1")


def cold_paths(store: Store) -> dict[str, Callable[[], Awaitable[Any]]]:
    """Every call of the store that reads from, or writes accounts to, the database."""
    return {
        "history": lambda: store.history(ALICE.id),
        "sessions": lambda: store.sessions("w"),
        "latest_conversation": lambda: store.latest_conversation(ALICE.id),
        "messages_after": lambda: store.messages_after("c", ""),
        "load_open_state": lambda: store.load_open_state(),
        "get_account": lambda: store.get_account(ALICE.id),
        "get_account_by_username": lambda: store.get_account_by_username("alice"),
        "get_external_account": lambda: store.get_external_account("ext-1"),
        "create_account": lambda: store.create_account(ALICE),
        "upsert_account": lambda: store.upsert_account(HOST),
        "rate": lambda: store.rate("c", 3),
    }


async def assert_store_errors(store: Store) -> None:
    for name, call in cold_paths(store).items():
        try:
            await call()
        except StoreError as exc:
            assert isinstance(exc, StoreUnavailable), (name, exc)
        except Exception as exc:  # pragma: no cover - what this test is here to catch
            pytest.fail(f"{name} raised {type(exc).__module__}.{type(exc).__name__}: {exc}")
        else:
            pytest.fail(f"{name} did not fail")
    (result,) = await asyncio.gather(
        *append_all(store, [message(IdGenerator(node=1), "c", ALICE.id, "w", "hi")])
    )
    assert isinstance(result, StoreUnavailable), result


def make_unreadable(path: Path) -> None:
    """Overwrite the file with bytes that are no SQLite database (as a bad disk would)."""
    size = path.stat().st_size
    with open(path, "r+b") as f:
        f.write(b"this is not a database file " * (size // 28 + 1))


@pytest.mark.parametrize("synchronous", ["NORMAL", "FULL"])
async def test_a_sqlite_file_that_became_unreadable(tmp_path: Path, synchronous: str) -> None:
    harness = SqliteHarness(tmp_path / "kefu.db", synchronous)
    store = harness.make()
    await store.start()
    try:
        make_unreadable(harness.path)
        await assert_store_errors(store)
    finally:
        await store.close()
    again = harness.make()
    with pytest.raises(StoreError):
        await again.start()
    await again.close()


async def test_a_postgresql_that_is_gone(postgres_url: str) -> None:
    harness = PostgresHarness(postgres_url)
    harness.reset()
    url = make_url(postgres_url)
    proxy = TcpProxy(url.host or "127.0.0.1", url.port or 5432)
    through = url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    try:
        store = PostgresHarness(through).make()
        await store.start()
        try:
            await store.create_account(ALICE)  # it works through the proxy
            assert await store.get_account(ALICE.id) == ALICE
            proxy.down()  # PostgreSQL is gone: connections cut, new ones refused
            await assert_store_errors(store)
        finally:
            await store.close()
        again = PostgresHarness(through).make()
        with pytest.raises(StoreError):
            await again.start()
        await again.close()
    finally:
        proxy.close()
