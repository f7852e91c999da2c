"""The database failing under a running server: each request that needed it gets an error.

* A message whose batch fails to commit: `error` status 0 with its op_id, no
  ack, nothing delivered, nothing stored; the resend with the same op_id once
  the database is back is stored once. On SQLite the commit is made to fail
  by the operating system: the server's file size limit (RLIMIT_FSIZE) is set
  to 0, so appending to the WAL fails as on a full disk; on PostgreSQL by
  cutting its connections (a TCP proxy between kefu and the database).
* History, the replay on resume and the rating of a closed conversation are
  reads (and one write) on the cold path: with PostgreSQL cut off each asker
  gets `error` status 0 (with its op_id when it sent one) and keeps its
  socket, and the same request works once the database is back.

(tests/reliability/test_database.py holds SQLite's write lock from outside
for the busy-timeout path.)
"""

from __future__ import annotations

import asyncio
import contextlib
import resource
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from support.client import Client, new_op_id, pair, person, say
from support.proxy import TcpProxy
from support.servers import MakeServer, Server
from support.services import (
    PG_ADMIN_URL,
    create_database,
    database_url,
    drop_database,
    in_thread,
)

pytestmark = pytest.mark.timeout(90)


@contextlib.contextmanager
def no_file_may_grow(pid: int) -> Iterator[None]:
    """The process's file size limit at 0 (writes to files fail with EFBIG), then restored.

    Python ignores SIGXFSZ, so the server is not killed: its writes fail.
    """
    old = resource.prlimit(pid, resource.RLIMIT_FSIZE)
    resource.prlimit(pid, resource.RLIMIT_FSIZE, (0, old[1]))
    try:
        yield
    finally:
        resource.prlimit(pid, resource.RLIMIT_FSIZE, old)


def stored_op_ids(db: Path) -> set[str]:
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        return {row[0] for row in con.execute("SELECT op_id FROM messages")}
    finally:
        con.close()


async def _failed_send(user: Client, waiter: Client, text: str) -> str:
    """A message that must fail to commit: the error, no ack; returns its op_id."""
    op = new_op_id()
    await user.send({"type": "message_text", "op_id": op, "payload": {"text": text}})
    err = await user.expect_error(0, timeout=15, op_id=op)  # the next frame: not an ack
    assert "resend" in err["payload"]["message"], err
    return op


async def _resent(user: Client, waiter: Client, text: str, op: str) -> None:
    """Nothing of the failed message came late; its resend is stored and delivered once."""
    await user.expect_nothing()  # no late ack
    await waiter.expect_nothing()  # and it was never delivered
    ack = await user.send_text(text, op_id=op)
    await waiter.expect("message_text", id=ack["id"])
    await user.send({"type": "get_history"})
    history = (await user.expect("message_history"))["payload"]
    assert [m["id"] for m in history if m["payload"] == {"text": text}] == [ack["id"]]


# ------------------------------------------------------------------ SQLite: a full disk


async def test_a_message_whose_commit_fails_gets_an_error_and_no_ack(
    make_server: MakeServer,
) -> None:
    srv = make_server(resume_grace=30)
    waiter, user = await srv.waiter(), await srv.user()
    await pair(user, waiter)
    await say(user, waiter, "before the disk filled up")
    assert srv.proc is not None
    text = f"while the disk is full {new_op_id()[:8]}"
    with no_file_may_grow(srv.proc.pid):
        op = await _failed_send(user, waiter, text)
        # the reads still work, and other sockets are answered
        await waiter.send({"type": "get_history_session"})
        await waiter.expect("session_history")
    assert op not in stored_op_ids(srv.db_path)
    await _resent(user, waiter, text, op)
    await say(waiter, user, "all good again")
    assert srv.alive()


# ------------------------------------------------------------ PostgreSQL: cut off


@dataclass
class CutOff:
    """A server on a fresh PostgreSQL database that it reaches through `proxy`."""

    srv: Server
    proxy: TcpProxy
    direct_url: str  # the same database, not through the proxy

    async def open_conversations(self) -> int:
        """Conversations the database holds as open (what the writer has committed)."""

        async def count() -> int:
            import asyncpg

            conn = await asyncpg.connect(self.direct_url, timeout=5)
            try:
                query = "SELECT count(*) FROM conversations WHERE closed_at IS NULL"
                return int(await conn.fetchval(query))
            finally:
                await conn.close()

        return in_thread(count)


@pytest.fixture
def cut_off_pg(make_server: MakeServer) -> Iterator[CutOff]:
    name, direct = create_database("kefu_trouble")
    host_port = PG_ADMIN_URL.split("@", 1)[1].split("/", 1)[0]
    host, _, port = host_port.partition(":")
    proxy = TcpProxy(host, int(port or 5432))
    through = database_url(name, PG_ADMIN_URL.replace(host_port, f"127.0.0.1:{proxy.port}"))
    try:
        yield CutOff(make_server(database_url=through, resume_grace=30), proxy, direct)
    finally:
        proxy.close()
        drop_database(name)


async def _paired(srv: Server) -> tuple[Client, Client]:
    waiter, user = await srv.waiter(), await srv.user()
    await pair(user, waiter)
    return user, waiter


async def test_pg_cut_off_a_message_gets_an_error_and_no_ack(cut_off_pg: CutOff) -> None:
    srv, proxy = cut_off_pg.srv, cut_off_pg.proxy
    user, waiter = await _paired(srv)
    await say(user, waiter, "before the outage")
    text = f"during the outage {new_op_id()[:8]}"
    proxy.down()
    try:
        op = await _failed_send(user, waiter, text)
    finally:
        proxy.up()
    await _resent(user, waiter, text, op)


@pytest.mark.parametrize("side", ["user", "waiter"])
async def test_pg_cut_off_history_is_an_error_then_works(cut_off_pg: CutOff, side: str) -> None:
    srv, proxy = cut_off_pg.srv, cut_off_pg.proxy
    user, waiter = await _paired(srv)
    ack = await say(user, waiter, "in the history")
    assert user.person is not None
    asker = user if side == "user" else waiter
    frame: dict[str, Any] = {"type": "get_history", "op_id": new_op_id()}
    if side == "waiter":
        frame["payload"] = {"user_id": user.person.id}
    proxy.down()
    try:
        await asker.send(frame)
        err = await asker.expect_error(0, timeout=15, op_id=frame["op_id"])
        assert "retry" in err["payload"]["message"], err
    finally:
        proxy.up()
    await asker.send(frame)
    got = (await asker.expect("message_history", op_id=frame["op_id"]))["payload"]
    entries = got if side == "user" else got["data"]
    assert [e["id"] for e in entries] == [ack["id"]]


async def test_pg_cut_off_the_replay_on_resume_is_an_error_then_works(cut_off_pg: CutOff) -> None:
    srv, proxy = cut_off_pg.srv, cut_off_pg.proxy
    who = person("user")
    waiter, user = await srv.waiter(), await srv.user(who)
    await pair(user, waiter)
    seen = await say(waiter, user, "seen")
    user.abort()
    await srv.until("the user's drop seen", lambda d: d["online_user_num"] == 0)
    missed = await waiter.send_text("missed while away", to=user.uuid)
    proxy.down()
    try:
        back = await srv.open("user", "back-during-outage")
        await back.auth(who, last_id=seen["id"])  # a known account: no read to authenticate
        frames = await back.sync(timeout=30)  # up to the end of the (failed) replay
        errors = [f for f in frames if f["type"] == "error"]
        assert [e["payload"]["status"] for e in errors] == [0], frames
        assert "replay" in errors[0]["payload"]["message"], errors
        assert not [f for f in frames if f["type"] == "message_text"], frames
    finally:
        proxy.up()
    await back.close()
    await srv.until("the second drop seen", lambda d: d["online_user_num"] == 0)
    again = await srv.open("user", "back-after-outage")
    await again.auth(who, last_id=seen["id"])
    frames = await again.sync(timeout=30)
    assert [f["id"] for f in frames if f["type"] == "message_text"] == [missed["id"]], frames


async def test_pg_cut_off_a_late_rating_is_an_error_then_works(cut_off_pg: CutOff) -> None:
    srv, proxy = cut_off_pg.srv, cut_off_pg.proxy
    user, waiter = await _paired(srv)
    await user.send({"type": "disconnect"})
    await user.expect("disconnected", from_=waiter.uuid)
    await waiter.expect("disconnected", from_=user.uuid)
    # the close is committed first: a lifecycle write pending at the cut would be retried
    # for about two minutes, and the rating (which flushes the writer first) would wait
    deadline = time.monotonic() + 10
    while await cut_off_pg.open_conversations():
        assert time.monotonic() < deadline, "the conversation's close was never committed"
        await asyncio.sleep(0.05)
    op = new_op_id()
    proxy.down()
    try:
        await user.send({"type": "rate", "op_id": op, "payload": {"rate": 4}})
        err = await user.expect_error(0, timeout=15, op_id=op)
        assert "retry" in err["payload"]["message"], err
    finally:
        proxy.up()
    await user.send({"type": "rate", "op_id": op, "payload": {"rate": 4}})
    await user.expect("rate_success", op_id=op, payload={"rate": 4})
