"""Alembic environment for kefu (run it through `kefu.store.migrate`, no alembic.ini).

The database URL comes from `config.attributes["database_url"]` (set by
`kefu.store.migrate.alembic_config`) or from `sqlalchemy.url`. A connection
passed in `config.attributes["connection"]` is used as is.

Every upgrade runs in **one transaction** holding the database's write lock
from the start (SQLite: `BEGIN IMMEDIATE`, with DDL inside the transaction;
PostgreSQL: a transaction-scoped advisory lock). Two processes upgrading the
same fresh database at once therefore run one after the other, and the second
finds nothing to do. SQLite uses batch mode (`render_as_batch`) so that later
revisions can alter tables.

`postgresql+asyncpg` URLs are run with an async engine via `asyncio.run`, so
call `upgrade` from synchronous code (or `asyncio.to_thread`), not from inside
a running event loop.
"""

from __future__ import annotations

import asyncio
from typing import Any

from alembic import context
from sqlalchemy import Connection, Engine, create_engine, event, pool
from sqlalchemy.engine import make_url

from kefu.store.tables import metadata

PG_LOCK_KEY = 0x6B656675  # "kefu"

config = context.config


def _url() -> str:
    url = config.attributes.get("database_url") or config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("no database URL: run migrations with kefu.store.migrate.upgrade(url)")
    return str(url)


def _migrate(connection: Connection) -> None:
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({PG_LOCK_KEY})")
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=True,
        compare_type=True,
    )
    context.run_migrations()


def _run(connection: Connection) -> None:
    if connection.in_transaction():
        _migrate(connection)  # the caller owns the transaction
        return
    with connection.begin():
        _migrate(connection)


def _sqlite_engine(url: str) -> Engine:
    """An engine whose transactions are real SQLite transactions, DDL included."""
    engine = create_engine(url, poolclass=pool.NullPool, connect_args={"timeout": 60})

    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # stop pysqlite's own BEGIN handling

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")  # take the write lock before reading

    return engine


async def _run_async(url: str) -> None:
    from sqlalchemy.ext.asyncio import create_async_engine

    engine = create_async_engine(url, poolclass=pool.NullPool)
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_run)
    finally:
        await engine.dispose()


def run_migrations_offline() -> None:
    context.configure(
        url=_url(), target_metadata=metadata, literal_binds=True, render_as_batch=True
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    url = _url()
    parsed = make_url(url)
    if parsed.drivername == "postgresql+asyncpg":
        asyncio.run(_run_async(url))
        return
    if parsed.get_backend_name() == "sqlite":
        engine = _sqlite_engine(url)
    else:
        engine = create_engine(url, poolclass=pool.NullPool)
    try:
        with engine.connect() as conn:
            _run(conn)
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
