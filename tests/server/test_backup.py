"""`kefu backup`: a consistent copy of a live SQLite database, its key, and PostgreSQL's advice.

The main test backs up a server while pairs of clients chat, starts a server on
the copy and checks that every message acked before the backup began is in it
exactly once, that the copy's signing key still verifies the old tokens, and
that the files are private.
"""

from __future__ import annotations

import asyncio
import os
import shlex
import sqlite3
import stat
import subprocess
import sys
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import make_url

from support.client import Client, Person, pair, person
from support.servers import REPO, MakeServer, Server, kefu_env, run_kefu
from support.services import (
    create_database,
    database_url,
    drop_database,
    in_thread,
    require_postgres,
)

pytestmark = pytest.mark.timeout(120)

PAIRS = 3
ACKED_BEFORE = 300  # messages acked before the backup starts (at the least)


@dataclass(frozen=True)
class Acked:
    id: str
    op_id: str
    sender: str  # the account id


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


async def authed(srv: Server, role: str, who: Person, key: str) -> Client:
    """A socket of `who`, signed in with a token made with `key` (the server's own key)."""
    client = await srv.open(role, f"{role}:{who.username}")
    await client.auth(who, token=who.token(key))
    return client


async def chat_until_stopped(user: Client, acked: list[Acked], stop: asyncio.Event) -> None:
    """Send one message at a time, recording each ack, until `stop` is set."""
    assert user.person is not None
    n = 0
    while not stop.is_set():
        ack = await user.send_text(f"backup test {n} {uuid.uuid4().hex}")
        acked.append(Acked(ack["id"], ack["op_id"], user.person.id))
        n += 1


async def whole_history(user: Client) -> list[str]:
    """Every message id of the user's history, paged with `before`, newest first."""
    ids: list[str] = []
    before: str | None = None
    while True:
        payload: dict[str, Any] = (
            {"limit": 100} if before is None else {"limit": 100, "before": before}
        )
        await user.send({"type": "get_history", "payload": payload})
        page = (await user.expect("message_history", skip=("message_text",)))["payload"]
        ids += [entry["id"] for entry in page]
        if len(page) < 100:
            return ids
        before = page[-1]["id"]


async def test_backup_while_messages_flow(make_server: MakeServer, tmp_path: Path) -> None:
    srv = make_server(secret="", max_users_per_waiter=1)  # the key is generated beside the db
    key_file = srv.data_dir / "kefu.db.secret"
    key = key_file.read_text().strip()

    users: list[Client] = []
    for _ in range(PAIRS):
        waiter = await authed(srv, "waiter", person("waiter"), key)
        await waiter.send({"type": "ready"})
        await waiter.expect("ready")
        user = await authed(srv, "user", person("user"), key)
        await pair(user, waiter)  # the only free waiter: one user each
        users.append(user)

    acked: list[Acked] = []
    stop = asyncio.Event()
    senders = [asyncio.create_task(chat_until_stopped(u, acked, stop)) for u in users]
    try:
        while len(acked) < ACKED_BEFORE:
            assert not any(t.done() for t in senders), [t.exception() for t in senders if t.done()]
            await asyncio.sleep(0.01)
        before = list(acked)  # acked, so committed, before the backup began
        copy = tmp_path / "restore" / "kefu.db"
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "kefu",
            "backup",
            str(copy),
            env=srv.env,
            cwd=srv.data_dir,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(proc.communicate(), 60)
        during = len(acked) - len(before)
        assert proc.returncode == 0, (out, err)
        assert not any(t.done() for t in senders), "a sender stopped during the backup"
    finally:
        stop.set()
        await asyncio.gather(*senders)
    print(f"{len(before)} acked before the backup, {during} while it ran, {len(acked)} in all")

    # the files: private, and the key beside the copy under the name a server looks for
    assert mode(copy) == 0o600, oct(mode(copy))
    copy_key = copy.with_name("kefu.db.secret")
    assert mode(copy_key) == 0o600, oct(mode(copy_key))
    assert copy_key.read_text().strip() == key
    assert f"signing key copied to {copy_key}" in out.decode()
    assert not list(copy.parent.glob("*.partial*")), list(copy.parent.iterdir())

    # the table: every message acked before the backup began, exactly once, with its id
    with sqlite3.connect(copy) as con:
        assert con.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        rows = con.execute("SELECT id, op_id, sender_id FROM messages").fetchall()
    by_op = Counter(op for _, op, _ in rows)
    stored = {op: (id_, sender) for id_, op, sender in rows}
    missing = [a for a in before if by_op[a.op_id] == 0]
    assert not missing, f"{len(missing)} acked messages missing from the copy, e.g. {missing[:3]}"
    twice = [a for a in before if by_op[a.op_id] != 1]
    assert not twice, f"stored more than once: {twice[:3]}"
    wrong = [a for a in before if stored[a.op_id] != (a.id, a.sender)]
    assert not wrong, f"stored with another id or sender: {wrong[:3]}"
    # and nothing that was never sent: everything else in it was acked later
    all_ops = {a.op_id for a in acked}
    assert set(by_op) <= all_ops, set(by_op) - all_ops

    # a server on the copy: the old tokens still verify, the history holds the messages
    await srv.close_clients()
    srv.stop()
    restored = make_server(data_dir=copy.parent, secret="")
    for user in users:
        assert user.person is not None
        again = await authed(restored, "user", user.person, key)
        history = await whole_history(again)
        counts = Counter(history)
        mine = [a for a in before if a.sender == user.person.id]
        assert mine, "every user had sent messages before the backup"
        assert all(counts[a.id] == 1 for a in mine), [a for a in mine if counts[a.id] != 1][:3]


def test_backup_refuses_to_overwrite_and_needs_a_database(tmp_path: Path) -> None:
    env = kefu_env(tmp_path, secret="")
    assert run_kefu(["db", "upgrade"], env, tmp_path).returncode == 0
    target = tmp_path / "copies" / "kefu.db"

    done = run_kefu(["backup", str(target)], env, tmp_path)
    assert done.returncode == 0, done.stderr
    # no key was generated yet (nothing signed a token), so there is none to copy
    assert not target.with_name("kefu.db.secret").exists()
    assert mode(target) == 0o600

    again = run_kefu(["backup", str(target)], env, tmp_path)
    assert again.returncode == 1
    assert again.stderr.startswith("kefu: ") and "exists" in again.stderr, again.stderr
    assert "Traceback" not in again.stderr

    nothing = kefu_env(tmp_path / "none", secret="")
    gone = run_kefu(["backup", str(tmp_path / "other.db")], nothing, tmp_path)
    assert gone.returncode == 1
    assert gone.stderr.startswith("kefu: no database at "), gone.stderr
    assert not (tmp_path / "none" / "kefu.db").exists(), "backup must not create the source"


def test_backup_with_key_in_environment_says_so(tmp_path: Path) -> None:
    env = kefu_env(tmp_path)  # KEFU_SECRET set
    assert run_kefu(["db", "upgrade"], env, tmp_path).returncode == 0
    done = run_kefu(["backup", str(tmp_path / "copy.db")], env, tmp_path)
    assert done.returncode == 0, done.stderr
    assert "KEFU_SECRET is set" in done.stdout
    assert not (tmp_path / "copy.db.secret").exists()


def test_postgres_backup_prints_pg_dump_and_restore_that_work(tmp_path: Path) -> None:
    """The printed commands, run as printed, copy a kefu database into a new one."""
    require_postgres()
    name, url = create_database()
    real = make_url(url)
    try:
        env = kefu_env(tmp_path, database_url=url)
        assert run_kefu(["db", "upgrade"], env, tmp_path).returncode == 0
        made = run_kefu(["users", "create", "bob", "--role", "waiter"], env, tmp_path)
        assert made.returncode == 0, made.stderr

        # backup reads only the URL: a password that is no one's shows it is never printed
        password = "pw-" + uuid.uuid4().hex
        env["KEFU_DATABASE_URL"] = real.set(password=password).render_as_string(False)
        dump = tmp_path / "kefu.dump"
        said = run_kefu(["backup", str(dump)], env, tmp_path)
        # exit 1: nothing was written, so `kefu backup x && upload x` stops there
        assert said.returncode == 1
        assert said.stderr.startswith("kefu: ") and "pg_dump" in said.stderr, said.stderr
        assert password not in said.stdout + said.stderr, "the password must not be printed"
        assert not dump.exists()

        commands = [
            ln.strip() for ln in said.stdout.splitlines() if ln.strip().startswith(("pg_", "creat"))
        ]
        assert [c.split()[0] for c in commands] == ["pg_dump", "createdb", "pg_restore"], commands
        tools_env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        if real.password:  # as the printed advice says: the password through PGPASSWORD
            tools_env["PGPASSWORD"] = real.password
        try:
            for command in commands:
                ran = subprocess.run(
                    shlex.split(command),
                    env=tools_env,
                    capture_output=True,
                    text=True,
                    timeout=60,
                    check=False,
                )
                assert ran.returncode == 0, (command, ran.stderr)

            async def accounts() -> list[str]:
                import asyncpg

                conn = await asyncpg.connect(database_url(f"{name}_restored"), timeout=5)
                try:
                    return [r[0] for r in await conn.fetch("SELECT username FROM accounts")]
                finally:
                    await conn.close()

            assert in_thread(accounts) == ["bob"]
        finally:
            drop_database(f"{name}_restored")
    finally:
        drop_database(name)


def test_restore_path_matches_the_servers_key_rule() -> None:
    """The copy's key is named as Settings.secret_file() names a database's key."""
    from kefu.backup import secret_path
    from kefu.settings import Settings

    for db in (Path("/var/lib/kefu/kefu.db"), Path("rel/x.sqlite"), REPO / "a b.db"):
        assert secret_path(db) == Settings(database_url=f"sqlite:///{db}").secret_file()


def test_postgres_advice_speaks_libpq() -> None:
    """pg_dump reads libpq URLs: no driver name, `sslmode` (asyncpg says `ssl`), no password."""
    from kefu.backup import postgres_instructions
    from kefu.settings import Settings

    url = "postgresql+asyncpg://kefu:pw%404711@db.example:6432/chat?ssl=require"
    text = postgres_instructions(make_url(url), Path("/b/k.dump"), Settings(database_url=url))
    assert "pg_dump --format=custom --file=/b/k.dump " in text
    assert "'postgresql://kefu@db.example:6432/chat?sslmode=require'" in text
    assert "'postgresql://kefu@db.example:6432/chat_restored?sslmode=require'" in text
    assert "asyncpg" not in text and "4711" not in text
