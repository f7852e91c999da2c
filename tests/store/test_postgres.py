"""PostgreSQL-only: migrations on PostgreSQL, and the store outliving its connections."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import asyncpg
import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from kefu.core.commands import CloseConversation, Enqueue
from kefu.ids import IdGenerator
from kefu.store.base import Appended, StoreUnavailable
from kefu.store.migrate import alembic_config, head, upgrade
from kefu.store.tables import metadata
from support.services import create_database, drop_database, in_thread

from .conftest import ALICE, BOB, PostgresHarness
from .test_contract import append_all, message, open_conversation


@pytest.fixture
def fresh_db() -> Iterator[str]:
    name, url = create_database("kefu_test_migrate")
    try:
        yield url
    finally:
        drop_database(name)


def _diff_and_version(url: str) -> tuple[list[Any], str | None]:
    from sqlalchemy.ext.asyncio import create_async_engine

    from kefu.store.postgres import urls

    async def run() -> tuple[list[Any], str | None]:
        engine = create_async_engine(urls(url)[1])
        try:
            async with engine.connect() as conn:

                def inspect(sync_conn: Any) -> tuple[list[Any], str | None]:
                    ctx = MigrationContext.configure(sync_conn)
                    return compare_metadata(ctx, metadata), ctx.get_current_revision()

                return await conn.run_sync(inspect)
        finally:
            await engine.dispose()

    return in_thread(run)


def test_migrations_build_the_schema_of_tables_py(fresh_db: str) -> None:
    upgrade(fresh_db)
    upgrade(fresh_db)  # a no-op the second time
    diff, version = _diff_and_version(fresh_db)
    assert diff == []
    assert version == head()


def _table_of(change: Any) -> str | None:
    """The table an autogenerate difference is about."""
    if isinstance(change, list):
        return str(change[0][2])
    if change[0] in ("add_table", "remove_table"):
        return str(change[1].name)
    obj = change[-1] if change[0] != "add_column" else change[3]
    table = getattr(obj, "table", None)
    if table is not None:
        return str(table.name)
    return str(change[2]) if len(change) > 2 and isinstance(change[2], str) else None


def test_0002_downgrades_and_upgrades_on_postgres(fresh_db: str) -> None:
    upgrade(fresh_db)
    command.downgrade(alembic_config(fresh_db), "0001")
    diff, version = _diff_and_version(fresh_db)
    assert version == "0001"
    # the two indexes 0002 drops are back, op_id is 64 wide again (0003 widens it),
    # and nothing else differs from tables.py
    indexes = [d for d in diff if d[0] == "remove_index"]
    assert sorted((op, index.name) for op, index in indexes) == [
        ("remove_index", "ix_messages_receiver_id_id"),
        ("remove_index", "ix_messages_sender_id_id"),
    ]
    columns = [change[0][:4] for change in diff if isinstance(change, list)]
    assert columns == [("modify_type", None, "messages", "op_id")]
    # 0004's accounts columns and constraints are gone too; nothing else differs
    accounts = [d for d in diff if _table_of(d) == "accounts"]
    # and so is 0005's leader_epoch table
    epoch = [d for d in diff if _table_of(d) == "leader_epoch"]
    assert [d[0] for d in epoch] == ["add_table"]
    # and 0006's api_keys table (its accounts columns and index are in `accounts`)
    keys = [d for d in diff if _table_of(d) == "api_keys"]
    assert [d[0] for d in keys] == ["add_table"]
    # and 0007's queue_exits table (with its index) and conversations index
    exits = [d for d in diff if _table_of(d) in ("queue_exits", "conversations")]
    assert sorted((d[0], _table_of(d)) for d in exits) == [
        ("add_index", "conversations"),
        ("add_index", "queue_exits"),
        ("add_table", "queue_exits"),
    ]
    # and 0008's webhook tables (the deliveries' three indexes)
    hooks = [d for d in diff if str(_table_of(d)).startswith("webhook")]
    assert sorted((d[0], _table_of(d)) for d in hooks) == [
        *[("add_index", "webhook_deliveries")] * 3,
        ("add_table", "webhook_deliveries"),
        ("add_table", "webhook_outbox"),
        ("add_table", "webhooks"),
    ]
    assert {_table_of(d) for d in diff} == {
        "messages",
        "accounts",
        "leader_epoch",
        "api_keys",
        "queue_exits",
        "conversations",
        "webhooks",
        "webhook_outbox",
        "webhook_deliveries",
    }
    assert len(indexes) + len(columns) + len(accounts) + len(epoch) + len(keys) + len(exits) + len(
        hooks
    ) == len(diff)
    upgrade(fresh_db)
    assert _diff_and_version(fresh_db) == ([], head())


def test_concurrent_upgrades_on_postgres(fresh_db: str) -> None:
    code = (
        "import sys; from kefu.store.migrate import alembic_config, upgrade; upgrade(sys.argv[1])"
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", code, fresh_db], stderr=subprocess.PIPE)
        for _ in range(3)
    ]
    errors = [p.communicate(timeout=60)[1].decode() for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], errors
    assert _diff_and_version(fresh_db) == ([], head())


async def test_store_survives_killed_connections(postgres_url: str) -> None:
    harness = PostgresHarness(postgres_url)
    harness.reset()
    new_id = IdGenerator(node=2)
    store = harness.make()
    await store.start()
    try:
        for account in (ALICE, BOB):
            await store.create_account(account)
        cid = await open_conversation(store, new_id, ALICE.id, BOB.id)
        harness._sql(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        first = message(new_id, cid, ALICE.id, BOB.id, "maybe", op_id="op-1")
        (result,) = await asyncio.gather(*append_all(store, [first]))
        assert isinstance(result, Appended | StoreUnavailable)
        store.write(Enqueue(ALICE.id, 5.0))  # a lifecycle record is retried, never lost
        again = message(new_id, cid, ALICE.id, BOB.id, "maybe", op_id="op-1")
        (retry,) = await asyncio.gather(*append_all(store, [again]))
        assert isinstance(retry, Appended)
        await store.flush()
        assert harness.count("messages") == 1
        # the pooled read connections were killed too: pre-ping replaces them
        assert [e.user.id for e in (await store.load_open_state()).queue] == [ALICE.id]
        assert len(await store.history(ALICE.id)) == 1
    finally:
        await store.close()


async def test_a_value_too_long_for_its_column_fails_only_its_item(postgres_url: str) -> None:
    """PostgreSQL checks widths (SQLite does not): a value too wide is one item's fault."""
    harness = PostgresHarness(postgres_url)
    harness.reset()
    new_id = IdGenerator(node=2)
    store = harness.make()
    await store.start()
    try:
        for account in (ALICE, BOB):
            await store.create_account(account)
        cid = await open_conversation(store, new_id, ALICE.id, BOB.id)
        good = message(new_id, cid, ALICE.id, BOB.id, "kept", op_id="op-1")
        too_long = message(new_id, cid, ALICE.id, BOB.id, "type too long", type_="t" * 33)
        other = message(new_id, "c" * 21, ALICE.id, BOB.id, "conversation id too long")
        last = message(new_id, cid, ALICE.id, BOB.id, "kept too", op_id="op-2")
        futures = append_all(store, [good, too_long, other])
        too_wide: Any = "r" * 33  # close_reason is 32 wide
        store.write(CloseConversation(cid, too_wide, 5.0))
        store.write(Enqueue(ALICE.id, 5.0))
        futures += append_all(store, [last])
        failures = store.writer.stats.failures
        r1, r2, r3, r4 = await asyncio.gather(*futures)
        assert [type(r).__name__ for r in (r1, r2, r3, r4)] == [
            "Appended",
            "StoreUnavailable",
            "StoreUnavailable",
            "Appended",
        ]
        assert isinstance(r2.__cause__, asyncpg.StringDataRightTruncationError)
        await store.flush()
        assert store.writer.stats.failures == failures  # no batch failed as a whole
        assert store.writer.stats.isolated >= 1
        assert [m.id for m in await store.messages_after(cid, "")] == [good.id, last.id]
        state = await store.load_open_state()
        assert [e.user.id for e in state.queue] == [ALICE.id]
        assert [c.id for c, _, _ in state.conversations] == [cid]  # the bad close was dropped
    finally:
        await store.close()
