"""The operating contract's command line, on SQLite and on PostgreSQL.

Every command runs as `python -m kefu ...`, as an operator would run it.
Failures must be one line on stderr starting with `kefu:` and a non-zero exit
code, never a traceback.
"""

from __future__ import annotations

import json
import re
import sqlite3
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
import pytest

from kefu.store.migrate import head
from support.client import SECRET
from support.servers import MakeServer, free_port, kefu_env, run_kefu
from support.services import (
    create_database,
    database_url,
    drop_database,
    in_thread,
    require_postgres,
)

pytestmark = pytest.mark.timeout(90)


@dataclass
class Database:
    kind: str  # "sqlite" | "postgresql"
    url: str

    def version(self) -> str | None:
        """The migration the database is at (alembic_version), or None without that table."""
        if self.kind == "sqlite":
            path = Path(self.url.removeprefix("sqlite:///"))
            if not path.exists():
                return None  # sqlite3.connect would create it
            with sqlite3.connect(path) as con:
                try:
                    return str(con.execute("SELECT version_num FROM alembic_version").fetchone()[0])
                except sqlite3.OperationalError:
                    return None

        async def read() -> str | None:
            import asyncpg

            conn = await asyncpg.connect(self.url, timeout=5)
            try:
                if await conn.fetchval("SELECT to_regclass('alembic_version')") is None:
                    return None
                return str(await conn.fetchval("SELECT version_num FROM alembic_version"))
            finally:
                await conn.close()

        return in_thread(read)


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    """A fresh database: a file in the test's folder, or CREATE DATABASE on PostgreSQL."""
    if request.param == "sqlite":
        yield Database("sqlite", f"sqlite:///{tmp_path / 'kefu.db'}")
        return
    name, url = create_database("kefu_test_cli")  # fails with CI=true if PostgreSQL is down
    try:
        yield Database("postgresql", url)
    finally:
        drop_database(name)


def _kefu(tmp_path: Path, database: Database, *args: str, **settings: Any) -> Any:
    env = kefu_env(tmp_path, database_url=database.url, **settings)
    return run_kefu(list(args), env, cwd=tmp_path)


def _json_output(stdout: str) -> dict[str, Any]:
    """The profile: the whole output as JSON, or else its last line."""
    text = stdout.strip()
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return json.loads(text.splitlines()[-1])


def _show(proc: Any) -> str:
    return f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"


def _fails_in_one_line(proc: Any, code: int = 1) -> str:
    """The process failed with `code` and said why in one `kefu:` line; returns that line."""
    assert proc.returncode == code, _show(proc)
    assert "Traceback" not in proc.stderr, _show(proc)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, _show(proc)
    assert lines[0].startswith("kefu: "), _show(proc)
    return str(lines[0])


def _token(proc: Any) -> str:
    assert proc.returncode == 0, _show(proc)
    return str(proc.stdout.strip().splitlines()[-1].strip())


# --------------------------------------------------------------------------- db upgrade


def test_db_upgrade(tmp_path: Path, database: Database) -> None:
    assert database.version() is None
    proc = _kefu(tmp_path, database, "db", "upgrade")
    assert proc.returncode == 0, _show(proc)
    assert database.version() == head()
    again = _kefu(tmp_path, database, "db", "upgrade")  # idempotent
    assert again.returncode == 0, _show(again)
    assert database.version() == head()


# --------------------------------------------------------------------------- users create


def test_users_create_prints_the_profile(tmp_path: Path, database: Database) -> None:
    proc = _kefu(
        tmp_path, database, "users", "create", "alice", "--role", "waiter", "--nickname", "A"
    )
    assert proc.returncode == 0, _show(proc)
    profile = _json_output(proc.stdout)
    assert set(profile) >= {"id", "username", "nickname", "avatar"}, profile
    assert profile["username"] == "alice"
    assert profile["nickname"] == "A"
    assert isinstance(profile["id"], str) and profile["id"]
    assert database.version() == head()  # a fresh database is migrated first


def test_users_create_twice_fails_clearly(tmp_path: Path, database: Database) -> None:
    first = _kefu(tmp_path, database, "users", "create", "alice", "--role", "waiter")
    assert first.returncode == 0, _show(first)
    second = _kefu(tmp_path, database, "users", "create", "alice", "--role", "user")
    line = _fails_in_one_line(second).lower()
    assert "alice" in line and "already exists" in line, _show(second)
    assert second.stdout == "", _show(second)


def test_users_create_with_a_bad_role_is_a_usage_error(tmp_path: Path, database: Database) -> None:
    proc = _kefu(tmp_path, database, "users", "create", "alice", "--role", "king")
    line = _fails_in_one_line(proc, code=2)
    assert "--role" in line and "king" in line, _show(proc)
    assert database.version() is None  # refused before touching the database


# --------------------------------------------------------------------------- token


def test_token_for_unknown_user_fails(tmp_path: Path, database: Database) -> None:
    upgraded = _kefu(tmp_path, database, "db", "upgrade")
    assert upgraded.returncode == 0, _show(upgraded)
    proc = _kefu(tmp_path, database, "token", "nobody")
    line = _fails_in_one_line(proc)
    assert "nobody" in line, _show(proc)
    assert proc.stdout == "", _show(proc)


async def test_cli_token_authenticates_on_the_waiter_socket(
    tmp_path: Path, database: Database, make_server: MakeServer
) -> None:
    created = _kefu(
        tmp_path, database, "users", "create", "alice", "--role", "waiter", "--nickname", "A"
    )
    assert created.returncode == 0, _show(created)
    profile = _json_output(created.stdout)
    token = _token(_kefu(tmp_path, database, "token", "alice", "--ttl", "120"))

    claims = jwt.decode(token, SECRET, algorithms=["HS256"])
    assert claims["sub"] == profile["id"]
    assert claims["role"] == "waiter"
    assert abs(claims["exp"] - (time.time() + 120)) < 30

    # same database (the URL is given to `kefu serve` as KEFU_DATABASE_URL), same secret
    srv = make_server(data_dir=tmp_path, database_url=database.url)
    waiter = await srv.open("waiter")
    await waiter.send({"type": "auth", "payload": {"token": token}})
    frame = await waiter.expect("auth_success")
    assert frame["payload"] == {k: profile[k] for k in ("id", "username", "nickname", "avatar")}
    await waiter.send({"type": "ready"})
    await waiter.expect("ready")


# --------------------------------------------------------------------------- demo


async def test_demo_creates_its_accounts_once(
    tmp_path: Path, database: Database, make_server: MakeServer
) -> None:
    first = _kefu(tmp_path, database, "demo", "--base-url", "http://kefu.example")
    assert first.returncode == 0, _show(first)
    links = dict(re.findall(r"/v1/ws/example/(waiter|user)#token=(\S+)", first.stdout))
    assert set(links) == {"waiter", "user"}, _show(first)
    assert "http://kefu.example/v1/ws/example/waiter#token=" in first.stdout

    again = _kefu(tmp_path, database, "demo")  # finds the accounts it made
    assert again.returncode == 0, _show(again)
    waiter_ids = {
        jwt.decode(token, SECRET, algorithms=["HS256"])["sub"]
        for token in (links["waiter"], re.findall(r"waiter#token=(\S+)", again.stdout)[0])
    }
    assert len(waiter_ids) == 1, waiter_ids

    srv = make_server(data_dir=tmp_path, database_url=database.url)
    for role in ("waiter", "user"):
        sock = await srv.open(role)
        await sock.send({"type": "auth", "payload": {"token": links[role]}})
        frame = await sock.expect("auth_success")
        assert frame["payload"]["username"] == f"demo-{role}"


# --------------------------------------------------------------------------- serve


async def test_serve_creates_and_migrates_the_database(
    tmp_path: Path, database: Database, make_server: MakeServer
) -> None:
    srv = make_server(data_dir=tmp_path, database_url=database.url)
    assert (await srv.status())["status"] == 1
    assert database.version() == head()


# --------------------------------------------------------------------------- failures

COMMANDS = {
    "serve": ["serve", "--host", "127.0.0.1"],
    "users create": ["users", "create", "alice"],
    "token": ["token", "alice"],
    "demo": ["demo"],
    "db upgrade": ["db", "upgrade"],
}


@pytest.mark.parametrize("command", COMMANDS)
def test_unreachable_postgresql_is_one_line(tmp_path: Path, command: str) -> None:
    # nothing listens on a port just found free; the password must not be shown
    url = f"postgresql://kefu:not-to-be-shown@127.0.0.1:{free_port()}/kefu"
    env = kefu_env(tmp_path, database_url=url, port=free_port())
    proc = run_kefu(COMMANDS[command], env, cwd=tmp_path, timeout=60)
    line = _fails_in_one_line(proc)
    assert "not-to-be-shown" not in proc.stderr + proc.stdout, _show(proc)
    assert "database postgresql://kefu:***@127.0.0.1" in line, _show(proc)
    assert "refused" in line.lower(), _show(proc)


@pytest.mark.parametrize("command", COMMANDS)
def test_unusable_sqlite_path_is_one_line(tmp_path: Path, command: str) -> None:
    (tmp_path / "a-file").write_text("not a folder")
    url = f"sqlite:///{tmp_path / 'a-file' / 'kefu.db'}"
    env = kefu_env(tmp_path, database_url=url, port=free_port())
    proc = run_kefu(COMMANDS[command], env, cwd=tmp_path, timeout=60)
    line = _fails_in_one_line(proc)
    assert f"database {tmp_path / 'a-file' / 'kefu.db'}" in line, _show(proc)


def test_a_missing_postgresql_database_is_one_line(tmp_path: Path) -> None:
    missing = database_url(f"kefu_test_missing_{uuid.uuid4().hex[:12]}", require_postgres())
    proc = run_kefu(["db", "upgrade"], kefu_env(tmp_path, database_url=missing), cwd=tmp_path)
    line = _fails_in_one_line(proc)
    assert "does not exist" in line, _show(proc)


def test_invalid_settings_are_a_usage_error(tmp_path: Path) -> None:
    proc = run_kefu(["db", "upgrade"], kefu_env(tmp_path, port="eighty"), cwd=tmp_path)
    line = _fails_in_one_line(proc, code=2)
    assert "invalid settings" in line and "port" in line, _show(proc)
