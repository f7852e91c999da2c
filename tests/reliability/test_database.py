"""Database trouble: a commit that fails is an error to its sender, never an ack.

The test holds SQLite's write lock from outside (what another process, a
backup or a stuck migration would do): the server's writer waits for its
busy timeout (5 s), rolls the batch back and fails it. The server must keep
running, answer the sender with an `error` (status 0, its op_id) and no ack,
and work again as soon as the lock is gone; the resend with the same op_id
is stored once.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from typing import Any

import pytest

from support.client import new_op_id, pair, person, say
from support.logscan import remember

from .conftest import server_logs
from .wire import db_rows

pytestmark = pytest.mark.timeout(60)


async def test_commit_failure_is_an_error_and_the_server_recovers(kefu_server: Any) -> None:
    srv = kefu_server(resume_grace=30)
    w, u = await srv.waiter(), await srv.user()
    await pair(u, w)
    await say(u, w, "before the trouble")
    known = person("user")
    await (await srv.user(known, label="known")).close()  # an account that already exists

    lock = sqlite3.connect(srv.db_path, isolation_level=None, timeout=1)
    lock.execute("BEGIN IMMEDIATE")  # the write lock, held by someone else
    try:
        op = new_op_id()
        text = f"during the trouble {op[:8]}"
        remember(text)
        t0 = time.monotonic()
        await u.send({"type": "message_text", "op_id": op, "payload": {"text": text}})
        # while the writer waits, the server still answers everything that needs no write
        status = await asyncio.wait_for(srv.status(), 2)
        assert status["data"]["online_user_num"] >= 1
        await u.send({"type": "get_history"})
        hist = await u.expect("message_history", timeout=3)
        assert len(hist["payload"]) == 1
        back = await srv.open("user", "known-again")  # a known account needs no write
        await back.auth(known)
        err = await u.expect_error(0, timeout=15, op_id=op)
        assert "resend" in err["payload"]["message"]
        waited = time.monotonic() - t0
        await w.expect_nothing(0.2)
        assert db_rows(srv.db_path, "SELECT id FROM messages WHERE op_id = ?", op) == []
    finally:
        lock.execute("ROLLBACK")
        lock.close()

    # the database is back: the resend is stored once, delivered, and the server is fine
    ack = await u.send_text(text, op_id=op)
    await w.expect("message_text", id=ack["id"])
    assert [r[0] for r in db_rows(srv.db_path, "SELECT id FROM messages WHERE op_id = ?", op)] == [
        ack["id"]
    ]
    await say(w, u, "all good again")
    assert srv.alive()
    logs = server_logs(srv)
    assert "Traceback" not in logs
    print("DB TROUBLE:", json.dumps({"error_after_seconds": round(waited, 1)}))


async def test_rating_while_the_database_is_locked_gets_an_error(kefu_server: Any) -> None:
    """Rating a closed conversation writes through the cold path: an error, not a crash."""
    srv = kefu_server()
    rater = await srv.user(label="rater")
    w = await srv.waiter()
    await pair(rater, w)
    await rater.send({"type": "disconnect"})
    await rater.expect("disconnected")
    await asyncio.sleep(0.2)
    lock = sqlite3.connect(srv.db_path, isolation_level=None, timeout=1)
    lock.execute("BEGIN IMMEDIATE")
    try:
        op = new_op_id()
        await rater.send({"type": "rate", "op_id": op, "payload": {"rate": 5}})
        await rater.expect_error(0, timeout=15, op_id=op)
    finally:
        lock.execute("ROLLBACK")
        lock.close()
    await rater.send({"type": "rate", "op_id": op, "payload": {"rate": 5}})
    await rater.expect("rate_success", op_id=op)
    assert db_rows(srv.db_path, "SELECT rate FROM conversations") == [(5,)]
    assert "Traceback" not in server_logs(srv)


async def test_new_account_while_the_database_is_locked_gets_an_error(kefu_server: Any) -> None:
    srv = kefu_server()
    newcomer = await srv.open("user", "newcomer")
    lock = sqlite3.connect(srv.db_path, isolation_level=None, timeout=1)
    lock.execute("BEGIN IMMEDIATE")
    try:
        await newcomer.send({"type": "auth", "payload": {"token": person("user").token()}})
        frame = await newcomer.expect("error", timeout=15)
        assert frame["payload"]["status"] in (0, 999999)
    finally:
        lock.execute("ROLLBACK")
        lock.close()
    await newcomer.auth(person("user"))  # the same socket, once the database is back
    assert "Traceback" not in server_logs(srv)
