"""The operating contract's command line: users create, token, db upgrade."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import jwt
import pytest

from support.client import SECRET
from support.servers import MakeServer, kefu_env, run_kefu

pytestmark = pytest.mark.timeout(60)


def _kefu(tmp_path: Path, *args: str) -> Any:
    return run_kefu(list(args), kefu_env(tmp_path), cwd=tmp_path)


def _json_output(stdout: str) -> dict[str, Any]:
    """The profile: the whole output as JSON, or else its last line."""
    text = stdout.strip()
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return json.loads(text.splitlines()[-1])


def _show(proc: Any) -> str:
    return f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"


def test_db_upgrade(tmp_path: Path) -> None:
    proc = _kefu(tmp_path, "db", "upgrade")
    assert proc.returncode == 0, _show(proc)
    assert (tmp_path / "kefu.db").exists()
    again = _kefu(tmp_path, "db", "upgrade")  # idempotent
    assert again.returncode == 0, _show(again)


def test_users_create_prints_the_profile(tmp_path: Path) -> None:
    proc = _kefu(tmp_path, "users", "create", "alice", "--role", "waiter", "--nickname", "A")
    assert proc.returncode == 0, _show(proc)
    profile = _json_output(proc.stdout)
    assert set(profile) >= {"id", "username", "nickname", "avatar"}, profile
    assert profile["username"] == "alice"
    assert profile["nickname"] == "A"
    assert isinstance(profile["id"], str) and profile["id"]


def test_users_create_twice_fails_clearly(tmp_path: Path) -> None:
    first = _kefu(tmp_path, "users", "create", "alice", "--role", "waiter")
    assert first.returncode == 0, _show(first)
    second = _kefu(tmp_path, "users", "create", "alice", "--role", "user")
    assert second.returncode != 0, _show(second)
    said = (second.stdout + second.stderr).lower()
    assert "alice" in said, _show(second)
    assert any(w in said for w in ("exist", "taken", "already", "duplicate")), _show(second)
    assert "Traceback" not in second.stderr, _show(second)


def test_token_for_unknown_user_fails(tmp_path: Path) -> None:
    _kefu(tmp_path, "db", "upgrade")
    proc = _kefu(tmp_path, "token", "nobody")
    assert proc.returncode != 0, _show(proc)
    assert "Traceback" not in proc.stderr, _show(proc)


async def test_cli_token_authenticates_on_the_waiter_socket(
    tmp_path: Path, make_server: MakeServer
) -> None:
    created = _kefu(tmp_path, "users", "create", "alice", "--role", "waiter", "--nickname", "A")
    assert created.returncode == 0, _show(created)
    profile = _json_output(created.stdout)
    proc = _kefu(tmp_path, "token", "alice", "--ttl", "120")
    assert proc.returncode == 0, _show(proc)
    token = proc.stdout.strip().splitlines()[-1].strip()

    claims = jwt.decode(token, SECRET, algorithms=["HS256"])
    assert claims["sub"] == profile["id"]
    assert claims["role"] == "waiter"
    assert abs(claims["exp"] - (time.time() + 120)) < 30

    srv = make_server(data_dir=tmp_path)  # same database, same secret
    waiter = await srv.open("waiter")
    await waiter.send({"type": "auth", "payload": {"token": token}})
    frame = await waiter.expect("auth_success")
    assert frame["payload"] == {k: profile[k] for k in ("id", "username", "nickname", "avatar")}
    await waiter.send({"type": "ready"})
    await waiter.expect("ready")
