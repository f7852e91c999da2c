"""`kefu users list|update|disable|enable|passwd|delete|logout`, on SQLite and PostgreSQL.

Run as an operator runs them (`python -m kefu ...`). With a server running
on the same database and port, a change goes through its admin API, so the
account's open sockets close at once (4403); with none, the database is
changed and a warning says what that leaves undone.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from support.api import backend, backend_settings  # noqa: F401 - the fixture
from support.client import Person, person
from support.servers import MakeServer, Server, kefu_env, run_kefu

pytestmark = pytest.mark.timeout(120)

CLOSE_REVOKED = 4403
NOT_AUTHENTICATED = 999999


class Kefu:
    """`python -m kefu` on one database (and, if given, the port of a server on it)."""

    def __init__(self, tmp_path: Path, database: str, port: int | None = None) -> None:
        self.cwd = tmp_path
        self.env = kefu_env(tmp_path, **backend_settings(database))
        self.env["KEFU_PORT"] = str(port) if port is not None else "1"  # 1: nobody answers

    def __call__(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        if stdin is None:
            return run_kefu(list(args), self.env, self.cwd)
        return subprocess.run(
            [sys.executable, "-m", "kefu", *args],
            env=self.env,
            cwd=self.cwd,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    def account(self, *args: str) -> dict[str, Any]:
        proc = self(*args)
        assert proc.returncode == 0, _show(proc)
        out: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
        return out

    def fails(self, *args: str, code: int = 1) -> str:
        proc = self(*args)
        assert proc.returncode == code, _show(proc)
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("kefu: "), _show(proc)
        assert "Traceback" not in proc.stderr
        return lines[0]


def _show(proc: subprocess.CompletedProcess[str]) -> str:
    return f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"


def test_the_commands_on_the_database(tmp_path: Path, backend: str) -> None:  # noqa: F811
    kefu = Kefu(tmp_path, backend)
    created = kefu("users", "create", "alice", "--role", "waiter", "--password", "first password")
    assert created.returncode == 0, _show(created)
    kefu("users", "create", "bob", "--nickname", "Bobby")
    listed = kefu("users", "list")
    assert listed.returncode == 0, _show(listed)
    rows = [json.loads(line) for line in listed.stdout.splitlines()]
    assert [r["username"] for r in rows] == ["bob", "alice"]  # newest first
    assert all("password" not in json.dumps(r) for r in rows)
    only = kefu("users", "list", "--role", "waiter").stdout.splitlines()
    assert [json.loads(line)["username"] for line in only] == ["alice"]
    found = kefu("users", "list", "-q", "BOBB").stdout.splitlines()
    assert [json.loads(line)["username"] for line in found] == ["bob"]
    assert len(kefu("users", "list", "--limit", "1").stdout.splitlines()) == 1

    proc = kefu("users", "update", "alice", "--nickname", "Al", "--role", "admin")
    assert proc.returncode == 0, _show(proc)
    assert "no kefu server answered" in proc.stderr  # said, not silently half done
    changed = json.loads(proc.stdout)
    assert (changed["nickname"], changed["role"]) == ("Al", "admin")
    assert kefu.account("users", "update", "alice", "--nickname", "")["nickname"] is None

    assert kefu.account("users", "disable", "alice")["disabled"] is True
    assert kefu.account("users", "disable", "alice")["disabled"] is True  # again: no change
    assert kefu.account("users", "enable", "alice")["disabled"] is False
    assert kefu.account("users", "passwd", "alice", "--password", "second password")["id"]
    asked = kefu("users", "passwd", "alice", stdin="third password\nthird password\n")
    assert asked.returncode == 0, _show(asked)
    mismatch = kefu("users", "passwd", "alice", stdin="one password\nanother one\n" * 3)
    assert mismatch.returncode != 0
    assert kefu.account("users", "logout", "alice")["id"] == changed["id"]
    erased = kefu.account("users", "delete", "bob", "--yes")
    assert (erased["username"], erased["erased"], erased["nickname"]) == (
        f"erased-{erased['id']}",
        True,
        None,
    )
    assert kefu("users", "delete", "bob", stdin="n\n").returncode != 0  # asks first

    # mistakes: one `kefu:` line, 2 for usage, 1 for the rest
    assert "nobody" in kefu.fails("users", "disable", "nobody")
    assert "--role" in kefu.fails("users", "update", "alice", "--role", "king", code=2)
    kefu.fails("users", "update", "alice", "--avatar", "javascript:alert(1)", code=2)
    kefu.fails("users", "update", "alice", code=2)  # nothing to change
    kefu.fails("users", "passwd", "alice", "--password", "short", code=2)
    assert "erased" in kefu.fails("users", "enable", erased["id"])


async def _signed_in(srv: Server, who: Person, token: str) -> Any:
    client = await srv.open("waiter" if who.role == "waiter" else "user")
    await client.auth(who, token=token)
    return client


async def test_a_running_server_applies_the_change_at_once(
    tmp_path: Path,
    backend: str,  # noqa: F811
    make_server: MakeServer,
) -> None:
    srv = make_server(data_dir=tmp_path, **backend_settings(backend))
    kefu = Kefu(tmp_path, backend, srv.port)
    host = person("user")
    first = await srv.user(host)
    proc = kefu("users", "disable", host.username)
    assert proc.returncode == 0, _show(proc)
    assert proc.stderr == ""  # the server made the change
    assert json.loads(proc.stdout)["disabled"] is True
    await first.expect_closed(CLOSE_REVOKED)
    again = await srv.open("user")
    await again.send({"type": "auth", "payload": {"token": host.token()}})
    await again.expect_error(NOT_AUTHENTICATED)
    assert kefu.account("users", "enable", host.username)["disabled"] is False
    token = host.token(iat=time.time())
    second = await srv.user(host)  # a host token without `iat` still works before a logout
    assert kefu.account("users", "logout", host.id)["id"] == host.id
    await second.expect_closed(CLOSE_REVOKED)
    refused = await srv.open("user")
    await refused.send({"type": "auth", "payload": {"token": token}})
    await refused.expect_error(NOT_AUTHENTICATED)
    # the server's own rules hold for the command line too
    assert "tokens" in kefu.fails("users", "update", host.username, "--nickname", "x")
    # the short-lived key the commands used is gone
    keys = kefu("api-keys", "list").stdout.strip().splitlines()
    assert keys == [keys[0]], keys  # only the header


@pytest.mark.parametrize("status", [500, 503])
def test_a_server_that_fails_the_change_is_not_gone_around(status: int) -> None:
    """A 5xx comes from a server that is there: changing the database behind it would leave
    its sockets open, so the command fails instead of falling back."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from kefu.cli.users import Refused, _Call, _through_api
    from kefu.settings import Settings

    class Failing(BaseHTTPRequestHandler):
        def do_PATCH(self) -> None:
            body = json.dumps({"status": status, "message": "database unavailable"}).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Failing)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        settings = Settings(host="127.0.0.1", port=server.server_address[1])

        async def never(*_: Any) -> None:
            raise AssertionError("the database must not be changed")

        call = _Call("PATCH", "", {"disabled": True}, never)
        with pytest.raises(Refused, match="database unavailable"):
            _through_api(settings, "kefu_key", call, "00000000000000000001")
    finally:
        server.shutdown()
        server.server_close()
