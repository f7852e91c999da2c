"""`kefu export conversations`, `kefu purge` and `KEFU_RETENTION_DAYS`, on SQLite and PostgreSQL.

A real session on `kefu serve`; the export is compared with what the admin
API shows of the same conversations (JSON lines) and with its CSV
transcripts (CSV). Conversations are aged by setting `closed_at` in the
database directly; purges must remove exactly the closed ones older than
the limit, with their messages, and leave the open ones.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import re
import sqlite3
import time
from typing import Any

import httpx
import pytest

from support.api import (
    admin_token,
    api,
    backend,  # noqa: F401 - the fixture
    backend_settings,
)
from support.client import Client, pair, say
from support.servers import MakeServer, Server, run_kefu
from support.services import in_thread

pytestmark = pytest.mark.timeout(120)

DAY = 86_400


def sql(srv: Server, backend: str, query: str, *args: Any) -> list[tuple[Any, ...]]:  # noqa: F811
    """Run one statement on the server's database (`?` placeholders on both)."""
    if backend == "sqlite":
        with sqlite3.connect(srv.db_path, timeout=10) as con:
            return [tuple(row) for row in con.execute(query, args).fetchall()]
    n = 0

    def number(_: Any) -> str:
        nonlocal n
        n += 1
        return f"${n}"

    pg_query = re.sub(r"\?", number, query)

    async def run() -> list[tuple[Any, ...]]:
        import asyncpg

        conn = await asyncpg.connect(backend, timeout=5)
        try:
            return [tuple(row) for row in await conn.fetch(pg_query, *args)]
        finally:
            await conn.close()

    return in_thread(run)


async def chat(srv: Server) -> tuple[Client, list[Client]]:
    """Three users served in turn: two conversations closed, the last one open."""
    waiter = await srv.waiter()
    users = []
    for n in range(3):
        user = await srv.user()
        await pair(user, waiter)
        await say(user, waiter, f"=1+{n} question number {n}")
        await say(waiter, user, image=f"https://cdn.example.com/{n}.png")
        await say(waiter, user, f'answer, "quoted"\nand a second line {n}')
        if n < 2:
            await user.send({"type": "disconnect"})
            await user.expect("disconnected")
            await waiter.expect("disconnected")
        users.append(user)
    return waiter, users


async def conversations_of(http: httpx.AsyncClient, since: str) -> list[dict[str, Any]]:
    """Every conversation opened since `since`, oldest first, as the API shows them."""
    deadline = time.monotonic() + 10
    while True:
        resp = await http.get("/conversations", params={"since": since, "limit": 200})
        items = [i for i in resp.json()["items"] if i["state"] != "queued"]
        if [i["state"] for i in items] == ["open", "closed", "closed"]:
            return list(reversed(items))
        assert time.monotonic() < deadline, items
        await asyncio.sleep(0.05)


def export(srv: Server, *args: str) -> str:
    proc = run_kefu(["export", "conversations", *args], srv.env, srv.data_dir)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


@pytest.fixture
def srv(backend: str, make_server: MakeServer) -> Server:  # noqa: F811
    return make_server(**backend_settings(backend))


async def test_export_round_trips(srv: Server) -> None:
    started = str(int(time.time()) - 60)
    await chat(srv)
    async with api(srv, admin_token()) as http:
        shown = await conversations_of(http, started)
        details, transcripts, csv_rows = [], [], []
        for c in shown:
            details.append((await http.get(f"/conversations/{c['id']}")).json())
            resp = await http.get(f"/conversations/{c['id']}/messages", params={"limit": 200})
            transcripts.append(resp.json()["items"])
            resp = await http.get(
                f"/conversations/{c['id']}/messages", headers={"Accept": "text/csv"}
            )
            csv_rows.append(list(csv.reader(io.StringIO(resp.text)))[1:])

    # JSON lines: one conversation a line, oldest first, as the API shows it, with its messages
    lines = export(srv, "--since", started).splitlines()
    exported = [json.loads(line) for line in lines]
    assert len(exported) == 3
    for got, detail, messages in zip(exported, details, transcripts, strict=True):
        assert got == {
            **{k: v for k, v in detail.items() if k != "message_count"},
            "messages": messages,
        }
        assert len(got["messages"]) == detail["message_count"] == 3
    # CSV: one row a message, its conversation first, the API's transcript columns after
    text = export(srv, "--since", started, "--format", "csv")
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0] == [
        "conversation_id",
        "id",
        "date",
        "sender_id",
        "sender_username",
        "type",
        "content",
    ]
    expected = [[c["id"], *row] for c, rs in zip(shown, csv_rows, strict=True) for row in rs]
    assert rows[1:] == expected
    assert rows[1][-1].startswith("'=1+0")  # a formula, made text
    assert rows[3][-1] == 'answer, "quoted"\nand a second line 0'

    # a range: --until is excluded, Unix seconds or RFC 3339
    second_opened = shown[1]["assigned_at"]
    assert [
        json.loads(x)["id"]
        for x in export(srv, "--since", started, "--until", second_opened).splitlines()
    ] == [shown[0]["id"]]
    assert [json.loads(x)["id"] for x in export(srv, "--since", second_opened).splitlines()] == [
        shown[1]["id"],
        shown[2]["id"],
    ]
    assert export(srv, "--since", "0", "--until", "1") == ""
    assert export(srv, "--since", "0", "--until", "1", "--format", "csv").count("\n") == 1
    # bad input is a usage error, on stderr
    for args in (
        ["--since", "last week"],
        ["--since", "10", "--until", "5"],
        ["--since", "1", "--format", "xml"],
    ):
        proc = run_kefu(["export", "conversations", *args], srv.env, srv.data_dir)
        assert proc.returncode == 2, (args, proc.stdout, proc.stderr)
        assert proc.stdout == ""


async def aged(srv: Server, backend: str, shown: list[dict[str, Any]]) -> None:  # noqa: F811
    """The first conversation closed 10 days ago, the second 3 days ago; the third stays open
    (though opened 20 days ago); one departure from the queue 10 days ago."""
    now = time.time()
    first, second, third = (c["id"] for c in shown)
    set_closed = "UPDATE conversations SET closed_at = ? WHERE id = ?"
    sql(srv, backend, set_closed, int((now - 10 * DAY) * 1e6), first)
    sql(srv, backend, set_closed, int((now - 3 * DAY) * 1e6), second)
    sql(
        srv,
        backend,
        "UPDATE conversations SET opened_at = ? WHERE id = ?",
        int((now - 20 * DAY) * 1e6),
        third,
    )
    old = int((now - 10 * DAY) * 1e6)
    sql(
        srv,
        backend,
        "INSERT INTO queue_exits (user_id, queued_at, left_at, served) VALUES (?, ?, ?, ?)",
        "gone",
        old,
        old,
        False,
    )


def counts(srv: Server, backend: str, shown: list[dict[str, Any]]) -> list[tuple[int, int]]:  # noqa: F811
    """(conversation rows, message rows) per conversation."""
    return [
        (
            sql(srv, backend, "SELECT count(*) FROM conversations WHERE id = ?", c["id"])[0][0],
            sql(srv, backend, "SELECT count(*) FROM messages WHERE conversation_id = ?", c["id"])[
                0
            ][0],
        )
        for c in shown
    ]


def old_exits(srv: Server, backend: str) -> int:  # noqa: F811
    cutoff = int((time.time() - 5 * DAY) * 1e6)
    return int(
        sql(srv, backend, "SELECT count(*) FROM queue_exits WHERE left_at < ?", cutoff)[0][0]
    )


async def test_purge_removes_exactly_the_old_closed_conversations(
    srv: Server,
    backend: str,  # noqa: F811
) -> None:
    started = str(int(time.time()) - 60)
    await chat(srv)
    async with api(srv, admin_token()) as http:
        shown = await conversations_of(http, started)
        await aged(srv, backend, shown)
        assert counts(srv, backend, shown) == [(1, 3), (1, 3), (1, 3)]
        assert old_exits(srv, backend) == 1
        recent_exits = sql(srv, backend, "SELECT count(*) FROM queue_exits")[0][0] - 1
        assert recent_exits == 3  # each user was served from the queue

        proc = run_kefu(["purge", "--older-than", "5"], srv.env, srv.data_dir)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.strip() == "deleted 1 conversations, 3 messages, 1 queue records"
        assert counts(srv, backend, shown) == [(0, 0), (1, 3), (1, 3)]
        assert old_exits(srv, backend) == 0
        assert sql(srv, backend, "SELECT count(*) FROM queue_exits")[0][0] == recent_exits
        assert (await http.get(f"/conversations/{shown[0]['id']}")).status_code == 404
        assert (await http.get(f"/conversations/{shown[1]['id']}")).status_code == 200
        # nothing more to do: a second run deletes nothing
        proc = run_kefu(["purge", "--older-than", "5"], srv.env, srv.data_dir)
        assert proc.stdout.strip() == "deleted 0 conversations, 0 messages, 0 queue records"
    for bad in (["purge"], ["purge", "--older-than", "0"], ["purge", "--older-than", "soon"]):
        proc = run_kefu(bad, srv.env, srv.data_dir)
        assert proc.returncode == 2, (bad, proc.stdout, proc.stderr)
    assert counts(srv, backend, shown)[1:] == [(1, 3), (1, 3)]


async def test_retention_purges_by_itself(
    backend: str,  # noqa: F811
    make_server: MakeServer,
) -> None:
    srv = make_server(retention_days=5, retention_interval=0.2, **backend_settings(backend))
    started = str(int(time.time()) - 60)
    waiter, users = await chat(srv)
    async with api(srv, admin_token()) as http:
        shown = await conversations_of(http, started)
        await aged(srv, backend, shown)
        deadline = time.monotonic() + 20
        while counts(srv, backend, shown)[0] != (0, 0) or old_exits(srv, backend):
            assert time.monotonic() < deadline, counts(srv, backend, shown)
            await asyncio.sleep(0.1)
        assert counts(srv, backend, shown)[1:] == [(1, 3), (1, 3)]
        # the open conversation goes on
        await say(users[2], waiter, "still here")
        assert counts(srv, backend, shown)[2] == (1, 4)
