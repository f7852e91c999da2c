"""The SQLite database, its -wal and -shm, and the generated signing key are 0600.

They hold password hashes, every message and the key that signs tokens. The
tests run kefu with umask 022, under which SQLite alone would make them 0644.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest

from support.client import SECRET, person
from support.servers import MakeServer, kefu_env, run_kefu

pytestmark = pytest.mark.timeout(60)

DB_FILES = ("kefu.db", "kefu.db-wal", "kefu.db-shm")
SECRET_FILE = "kefu.db.secret"


@pytest.fixture(autouse=True)
def usual_umask() -> Iterator[None]:
    """The umask most systems have: files readable by everyone unless kefu says otherwise."""
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def _mode(path: Path) -> str:
    return f"{stat.S_IMODE(path.stat().st_mode):04o}"


def _modes(folder: Path) -> dict[str, str]:
    """The mode of every kefu.db* file in `folder` (the database, its journals, the key)."""
    return {p.name: _mode(p) for p in sorted(folder.glob("kefu.db*"))}


def _show(proc: Any) -> str:
    return f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"


def _kefu(folder: Path, *args: str, secret: str = SECRET) -> Any:
    proc = run_kefu(list(args), kefu_env(folder, secret), cwd=folder)
    assert proc.returncode == 0, _show(proc)
    return proc


def _warnings(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if "made private" in line]


# --------------------------------------------------------------------------- new files


async def test_a_fresh_server_makes_every_file_0600(
    tmp_path: Path, make_server: MakeServer
) -> None:
    srv = make_server(data_dir=tmp_path / "data", secret="")  # no KEFU_SECRET: a key is made
    key = (srv.data_dir / SECRET_FILE).read_text().strip()
    who = person("waiter")
    waiter = await srv.open("waiter")
    await waiter.auth(who, token=who.token(key))  # its account is written: the WAL is in use
    assert _modes(srv.data_dir) == {name: "0600" for name in (*DB_FILES, SECRET_FILE)}
    assert _warnings(srv.stderr()) == []  # nothing was readable, nothing to report


def test_db_upgrade_creates_a_private_database_and_folder(tmp_path: Path) -> None:
    folder = tmp_path / "new" / "data"  # created by kefu
    env = kefu_env(folder)
    proc = run_kefu(["db", "upgrade"], env, cwd=tmp_path)
    assert proc.returncode == 0, _show(proc)
    assert _modes(folder) == {"kefu.db": "0600"}
    assert _warnings(proc.stderr) == []


def test_users_create_and_token_on_a_fresh_path_make_0600_files(tmp_path: Path) -> None:
    _kefu(tmp_path, "users", "create", "alice", "--role", "waiter")
    assert _modes(tmp_path) == {"kefu.db": "0600"}  # the store removed its WAL on close
    _kefu(tmp_path, "token", "alice", secret="")  # no KEFU_SECRET: a key is made
    assert _modes(tmp_path) == {"kefu.db": "0600", SECRET_FILE: "0600"}


# --------------------------------------------------------------------------- existing files


async def test_a_readable_database_is_made_private_at_start(
    tmp_path: Path, make_server: MakeServer
) -> None:
    srv = make_server(data_dir=tmp_path)
    await srv.waiter()
    srv.kill()  # a crash leaves the -wal and -shm behind
    for name in DB_FILES:
        (tmp_path / name).chmod(0o644)
    assert set(_modes(tmp_path).values()) == {"0644"}

    srv.start()
    assert _modes(tmp_path) == {name: "0600" for name in DB_FILES}
    (warning,) = _warnings(srv.stderr())  # one line names all three
    assert all(name in warning for name in DB_FILES), warning
    assert "0644" in warning, warning
    await srv.waiter()  # and the database still works


def test_db_upgrade_makes_a_readable_database_private(tmp_path: Path) -> None:
    _kefu(tmp_path, "db", "upgrade")
    (tmp_path / "kefu.db").chmod(0o640)
    proc = _kefu(tmp_path, "db", "upgrade")
    assert _modes(tmp_path) == {"kefu.db": "0600"}
    (warning,) = _warnings(proc.stderr)
    assert "kefu.db" in warning and "0640" in warning, _show(proc)


# --------------------------------------------------------------------------- the signing key


async def test_the_generated_key_is_kept_across_restarts(
    tmp_path: Path, make_server: MakeServer
) -> None:
    created = _kefu(tmp_path, "users", "create", "alice", "--role", "waiter")
    token = _kefu(tmp_path, "token", "alice", secret="").stdout.strip().splitlines()[-1]
    key_file = tmp_path / SECRET_FILE
    assert _mode(key_file) == "0600"
    key = key_file.read_text().strip()
    assert len(key) >= 32
    assert jwt.decode(token, key, algorithms=["HS256"])["username"] == "alice"
    with pytest.raises(jwt.InvalidSignatureError):  # signed with the generated key only
        jwt.decode(token, SECRET, algorithms=["HS256"])

    srv = make_server(data_dir=tmp_path, secret="")
    for run in range(2):
        waiter = await srv.open("waiter")
        await waiter.send({"type": "auth", "payload": {"token": token}})
        frame = await waiter.expect("auth_success")
        assert frame["payload"]["username"] == "alice", (run, frame)
        await srv.close_clients()
        assert key_file.read_text().strip() == key
        assert _mode(key_file) == "0600"
        srv.restart()
    assert created.returncode == 0


async def test_a_readable_key_file_is_made_private_at_start(
    tmp_path: Path, make_server: MakeServer
) -> None:
    srv = make_server(data_dir=tmp_path, secret="")
    key = (tmp_path / SECRET_FILE).read_text()
    srv.stop()
    (tmp_path / SECRET_FILE).chmod(0o644)
    srv.start()
    assert _mode(tmp_path / SECRET_FILE) == "0600"
    assert (tmp_path / SECRET_FILE).read_text() == key  # the same key, kept
    assert any(SECRET_FILE in line and "0600" in line for line in srv.stderr().splitlines())
