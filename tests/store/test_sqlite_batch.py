"""SQLite: a batch's runs of messages (one executemany each) give what op-by-op inserts give."""

from __future__ import annotations

import json
import random
import sqlite3
from pathlib import Path
from typing import Any

from kefu.core.commands import Dequeue, Enqueue, OpenConversation
from kefu.ids import IdGenerator, id_time
from kefu.store.base import NewMessage
from kefu.store.migrate import upgrade
from kefu.store.sqlite import SqliteBackend
from kefu.store.writer import WriteOp

PEOPLE = [("u-alice", "user"), ("u-carol", "user"), ("w-bob", "waiter"), ("w-dave", "waiter")]


def backend(path: Path) -> SqliteBackend:
    upgrade(f"sqlite:///{path}")
    with sqlite3.connect(path) as con:
        con.executemany(
            "INSERT INTO accounts (id, username, role, created_at) VALUES (?, ?, ?, 0)",
            [(id_, id_, role) for id_, role in PEOPLE],
        )
    b = SqliteBackend(str(path), "NORMAL", 1.0)
    b.open()
    return b


def like_the_writer(b: SqliteBackend, ops: list[WriteOp]) -> list[Any]:
    """The writer's policy: the batch as is; after an item error, op by op in savepoints."""
    try:
        return b.execute(ops, False)
    except Exception as exc:
        assert b.is_item_error(exc), exc
        return b.execute(ops, True)


def outcome(results: list[Any]) -> list[Any]:
    return [type(r).__name__ if isinstance(r, BaseException) else r for r in results]


def rows(path: Path) -> list[tuple[Any, ...]]:
    with sqlite3.connect(path) as con:
        return con.execute("SELECT * FROM messages ORDER BY id").fetchall()


def batches(seed: int, count: int) -> list[list[WriteOp]]:
    """Batches where retries, conflicts, NULL op_ids, re-sent ids and bad rows are common."""
    rng = random.Random(seed)
    new_id = IdGenerator(node=3)
    convs = [new_id()]
    sent: list[NewMessage] = []
    out: list[list[WriteOp]] = [[OpenConversation(convs[0], "u-alice", "w-bob", 1.0)]]
    for _ in range(count):
        ops: list[WriteOp] = []
        for _ in range(rng.randint(1, 30)):
            roll = rng.random()
            if roll < 0.05:
                cid = new_id()
                convs.append(cid)
                ops.append(OpenConversation(cid, "u-carol", "w-dave", id_time(cid)))
            elif roll < 0.08:
                records: list[WriteOp] = [Enqueue("u-carol", 5.0), Dequeue("u-carol")]
                ops.append(rng.choice(records))
            elif roll < 0.13 and sent:
                ops.append(rng.choice(sent))  # the very same message (and id) again
            else:
                mid = new_id()
                cid = "missing" if rng.random() < 0.02 else rng.choice(convs)
                text = rng.choice(["hi", "hello"])
                payload = json.dumps({"text": text}, separators=(",", ":")).encode()
                if rng.random() < 0.1:
                    payload = json.dumps({"text": text}).encode()  # same JSON, other bytes
                m = NewMessage(
                    mid,
                    cid,
                    rng.choice(["message_text", "message_image"]),
                    rng.choice(PEOPLE)[0],
                    rng.choice(PEOPLE)[0],
                    payload,
                    rng.choice(["a", "b", "c", "d", "e", None]),
                    id_time(mid),
                )
                sent.append(m)
                ops.append(m)
        out.append(ops)
    return out


def test_batch_results_equal_op_by_op(tmp_path: Path) -> None:
    fast = backend(tmp_path / "fast.db")
    slow = backend(tmp_path / "slow.db")
    try:
        for ops in batches(seed=7, count=300):
            got = outcome(like_the_writer(fast, ops))
            want = outcome(slow.execute(ops, True))
            assert got == want, ops
    finally:
        fast.close()
        slow.close()
    assert rows(tmp_path / "fast.db") == rows(tmp_path / "slow.db")
    assert len(rows(tmp_path / "fast.db")) > 300


def traced(b: SqliteBackend, ops: list[WriteOp]) -> tuple[list[Any], list[str]]:
    """Run a batch the way the writer does; the results and every statement that ran."""
    assert b._con is not None
    statements: list[str] = []
    b._con.set_trace_callback(statements.append)
    try:
        return like_the_writer(b, ops), statements
    finally:
        b._con.set_trace_callback(None)


def test_lookups_only_when_a_key_was_taken(tmp_path: Path) -> None:
    b = backend(tmp_path / "kefu.db")
    try:
        new_id = IdGenerator(node=3)
        cid = new_id()
        b.execute([OpenConversation(cid, "u-alice", "w-bob", 1.0)], False)

        def msg(op_id: str | None) -> NewMessage:
            mid = new_id()
            return NewMessage(mid, cid, "message_text", "u-alice", "w-bob", b"{}", op_id, 1.0)

        clean = [msg(str(i)) for i in range(50)]
        results, statements = traced(b, list(clean))
        assert [r.id for r in results] == [m.id for m in clean]
        assert not [s for s in statements if s.startswith(("SELECT", "SAVEPOINT"))]

        # retries of a stored message and of one earlier in the run, and no op_id:
        # looked up row by row, settled without running the batch again
        mixed = [msg("new"), msg("1"), msg(None), msg("new"), msg(None)]
        results, statements = traced(b, list(mixed))
        assert [(r.id, r.duplicate) for r in results] == [
            (mixed[0].id, False),
            (clean[1].id, True),
            (mixed[2].id, False),
            (mixed[0].id, True),
            (mixed[4].id, False),
        ]
        assert len([s for s in statements if s.startswith("SELECT")]) == 3
        assert not [s for s in statements if s.startswith("SAVEPOINT")]
    finally:
        b.close()
