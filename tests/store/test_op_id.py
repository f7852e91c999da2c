"""A frame's op_id may have 128 characters: every store keeps, acks and deduplicates one.

Migration 0003 widened `messages.op_id` from 64 to 128 characters: PostgreSQL
refused longer values (SQLite ignores the width). Here: the store contract with
such op_ids on every harness, and 0003 itself on SQLite and PostgreSQL.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from sqlalchemy import create_engine, inspect

from kefu.ids import IdGenerator
from kefu.store.base import Appended, Store
from kefu.store.migrate import alembic_config, upgrade
from support.services import create_database, drop_database, in_thread

from .conftest import ALICE, BOB
from .test_contract import appended, message, open_conversation

MAX_OP_ID = 128  # kefu.protocol.frames.OpId
LONG_OP = "op-" + "0123456789abcdef" * 8  # 131 characters, cut to the widest allowed
OP_A = LONG_OP[: MAX_OP_ID - 1] + "A"
OP_B = LONG_OP[: MAX_OP_ID - 1] + "B"  # the same as OP_A up to its last character


async def test_a_128_character_op_id_is_stored_acked_and_deduplicated(
    store: Store, people: Any, new_id: IdGenerator
) -> None:
    assert len(OP_A) == len(OP_B) == MAX_OP_ID
    cid = await open_conversation(store, new_id, ALICE.id, BOB.id)
    first = message(new_id, cid, ALICE.id, BOB.id, "hello", op_id=OP_A)
    assert await appended(store, first) == Appended(id=first.id, created=first.created)

    retry = await appended(store, message(new_id, cid, ALICE.id, BOB.id, "hello", op_id=OP_A))
    assert retry.duplicate and not retry.conflict and retry.id == first.id
    changed = await appended(store, message(new_id, cid, ALICE.id, BOB.id, "other", op_id=OP_A))
    assert changed.conflict and changed.id == first.id
    # all 128 characters are the key, not a prefix of them
    other = message(new_id, cid, ALICE.id, BOB.id, "hello", op_id=OP_B)
    assert not (await appended(store, other)).duplicate

    stored = await store.messages_after(cid, "")
    assert [(m.id, m.op_id) for m in stored] == [(first.id, OP_A), (other.id, OP_B)]


# --------------------------------------------------------------------------- migration 0003

_ROWS = (
    "INSERT INTO accounts (id, username, role, created_at) VALUES ('u', 'u', 'user', 0)",
    "INSERT INTO accounts (id, username, role, created_at) VALUES ('w', 'w', 'waiter', 0)",
    "INSERT INTO conversations (id, user_id, waiter_id, opened_at) VALUES ('c', 'u', 'w', 0)",
)


def _insert_message(mid: str, op_id: str) -> str:
    return (
        "INSERT INTO messages (id, conversation_id, type, sender_id, receiver_id, payload,"
        f" op_id, created_at) VALUES ('{mid}', 'c', 'message_text', 'u', 'w', '{{}}',"
        f" '{op_id}', 0)"
    )


def _op_id_type(url: str) -> str:
    engine = create_engine(url)
    try:
        (column,) = (c for c in inspect(engine).get_columns("messages") if c["name"] == "op_id")
        return str(column["type"])
    finally:
        engine.dispose()


def test_0003_on_sqlite_keeps_the_messages_and_their_keys(tmp_path: Path) -> None:
    path = tmp_path / "kefu.db"
    url = f"sqlite:///{path}"
    upgrade(url, "0002")
    with sqlite3.connect(path) as con:
        for sql in (*_ROWS, _insert_message("m1", "op-1"), _insert_message("m2", OP_A)):
            con.execute(sql)
    assert _op_id_type(url) == "VARCHAR(64)"

    upgrade(url, "0003")  # batch mode: the table is copied into a new one
    assert _op_id_type(url) == "VARCHAR(128)"
    with sqlite3.connect(path) as con:
        assert con.execute("SELECT id, op_id FROM messages ORDER BY id").fetchall() == [
            ("m1", "op-1"),
            ("m2", OP_A),
        ]
        assert con.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        indexes = {row[1] for row in con.execute("PRAGMA index_list(messages)")}
        assert "ix_messages_conversation_id_id" in indexes
        con.execute("PRAGMA foreign_keys=ON")
        with pytest.raises(sqlite3.IntegrityError, match="UNIQUE"):  # (sender_id, op_id) kept
            con.execute(_insert_message("m3", OP_A))
        with pytest.raises(sqlite3.IntegrityError, match="FOREIGN KEY"):  # the conversation FK
            con.execute(_insert_message("m4", "op-4").replace("'c'", "'no-such'"))

    command.downgrade(alembic_config(url), "0002")
    assert _op_id_type(url) == "VARCHAR(64)"
    with sqlite3.connect(path) as con:
        assert con.execute("SELECT count(*) FROM messages").fetchone() == (2,)


@pytest.fixture
def fresh_postgres() -> Iterator[str]:
    name, url = create_database("kefu_test_op_id")
    try:
        yield url
    finally:
        drop_database(name)


def _pg(url: str, *statements: str) -> None:
    async def run() -> None:
        import asyncpg

        conn = await asyncpg.connect(url, timeout=5)
        try:
            for sql in statements:
                await conn.execute(sql)
        finally:
            await conn.close()

    in_thread(run)


def test_0003_on_postgresql_lets_a_128_character_op_id_in(fresh_postgres: str) -> None:
    import asyncpg

    upgrade(fresh_postgres, "0002")
    _pg(fresh_postgres, *_ROWS, _insert_message("m1", "op-1"))
    with pytest.raises(asyncpg.StringDataRightTruncationError):  # what 0002 did to such a frame
        _pg(fresh_postgres, _insert_message("m2", OP_A))

    upgrade(fresh_postgres)
    _pg(fresh_postgres, _insert_message("m2", OP_A))
    with pytest.raises(asyncpg.UniqueViolationError):
        _pg(fresh_postgres, _insert_message("m3", OP_A))

    # the downgrade narrows it again once no op_id is longer than 64
    _pg(fresh_postgres, "DELETE FROM messages WHERE id = 'm2'")
    command.downgrade(alembic_config(fresh_postgres), "0002")
    with pytest.raises(asyncpg.StringDataRightTruncationError):
        _pg(fresh_postgres, _insert_message("m2", OP_A))
