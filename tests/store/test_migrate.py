"""Migrations: upgrade creates the schema of tables.py, is idempotent and safe to race."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, inspect

from kefu.settings import Settings
from kefu.store import open_store
from kefu.store.migrate import alembic_config, current, head, resolve_url, upgrade
from kefu.store.sqlite import SqliteStore
from kefu.store.tables import metadata


def _schema(path: Path) -> list[tuple[str, str]]:
    engine = create_engine(f"sqlite:///{path}")
    with engine.connect() as conn:
        rows = conn.exec_driver_sql("SELECT name, sql FROM sqlite_master ORDER BY name").all()
    engine.dispose()
    return [(r[0], r[1]) for r in rows]


def test_upgrade_creates_all_tables(tmp_path: Path) -> None:
    path = tmp_path / "new" / "kefu.db"  # the folder is created too
    url = f"sqlite:///{path}"
    assert current(url) is None
    upgrade(url)
    assert current(url) == head()
    engine = create_engine(url)
    try:
        names = set(inspect(engine).get_table_names())
        assert names == {*metadata.tables, "alembic_version"}
        with engine.connect() as conn:
            # the migration and tables.py describe the same schema
            diff = compare_metadata(MigrationContext.configure(conn), metadata)
        assert diff == []
    finally:
        engine.dispose()


def test_upgrade_twice_is_a_no_op(tmp_path: Path) -> None:
    path = tmp_path / "kefu.db"
    url = f"sqlite:///{path}"
    upgrade(url)
    before = _schema(path)
    upgrade(url)
    assert _schema(path) == before
    assert current(url) == head()


def test_concurrent_upgrades_on_a_fresh_file(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'race.db'}"
    code = "import sys; from kefu.store.migrate import upgrade; upgrade(sys.argv[1])"
    procs = [
        subprocess.Popen([sys.executable, "-c", code, url], stderr=subprocess.PIPE)
        for _ in range(3)
    ]
    errors = [p.communicate(timeout=60)[1].decode() for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], errors
    assert current(url) == head()


def test_0002_keeps_the_messages_and_downgrades(tmp_path: Path) -> None:
    path = tmp_path / "kefu.db"
    url = f"sqlite:///{path}"
    upgrade(url, "0001")
    with sqlite3.connect(path) as con:
        con.execute(
            "INSERT INTO accounts (id, username, role, created_at) VALUES ('u', 'u', 'user', 0)"
        )
        con.execute(
            "INSERT INTO accounts (id, username, role, created_at) VALUES ('w', 'w', 'waiter', 0)"
        )
        con.execute(
            "INSERT INTO conversations (id, user_id, waiter_id, opened_at)"
            " VALUES ('c', 'u', 'w', 0)"
        )
        con.execute(
            "INSERT INTO messages VALUES ('00000000000000000001', 'c', 'message_text', 'u', 'w',"
            " '{}', 'op', 0)"
        )
    schema_0001 = _schema(path)
    upgrade(url, "0002")
    assert current(url) == "0002"
    names = {name for name, _ in _schema(path)}
    assert "ix_messages_sender_id_id" not in names and "ix_messages_receiver_id_id" not in names
    assert "ix_messages_conversation_id_id" in names
    with sqlite3.connect(path) as con:
        assert con.execute("SELECT id, op_id FROM messages").fetchall() == [
            ("00000000000000000001", "op")
        ]
        assert con.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    schema_0002 = _schema(path)

    command.downgrade(alembic_config(url), "0001")
    assert current(url) == "0001"
    assert _schema(path) == schema_0001
    upgrade(url, "0002")
    assert _schema(path) == schema_0002
    with sqlite3.connect(path) as con:
        assert con.execute("SELECT count(*) FROM messages").fetchone() == (1,)


def test_resolve_url() -> None:
    assert resolve_url("sqlite:///./kefu.db") == "sqlite:///./kefu.db"
    assert resolve_url("postgresql+asyncpg://u:p@h/db") == "postgresql+asyncpg://u:p@h/db"
    assert resolve_url("postgresql://u:p@h/db").startswith("postgresql+")
    with pytest.raises(ValueError):
        resolve_url("mysql://h/db")


def test_open_store_by_scheme(tmp_path: Path) -> None:
    store = open_store(
        Settings(database_url=f"sqlite:///{tmp_path / 'k.db'}", sqlite_synchronous="FULL")
    )
    assert isinstance(store, SqliteStore)
    from kefu.store.postgres import PostgresStore

    assert isinstance(open_store(Settings(database_url="postgresql://h/db")), PostgresStore)
    with pytest.raises(ValueError):
        open_store(Settings(database_url="mysql://h/db"))
    with pytest.raises(ValueError):
        SqliteStore("sqlite://")  # in-memory: the writer and readers could not share it
