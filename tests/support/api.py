"""Helpers for tests of the admin API (`/v1/api`): credentials, a client, both databases.

* `api(srv, credential)`: an httpx client on `srv`'s `/v1/api`, sending
  `Authorization: Bearer <credential>` (none if `credential` is None).
* `admin_token()` / `user_token()`: host-application tokens of fresh accounts
  with those roles (made on first use, as for the chat sockets).
* `create_key(srv, name, read_only)`: `kefu api-keys create` on the server's
  database; the key is remembered as a secret no log may hold.
* the `backend` fixture: "sqlite" or "postgresql" (a fresh database, dropped
  afterwards); `backend_settings(backend)` are the server settings for it.
  Request `backend` before `make_server`, so the database is dropped after
  the server stopped.

Like `support.client`, nothing here imports kefu.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from support.client import Person, person
from support.logscan import remember
from support.servers import run_kefu
from support.services import create_database, drop_database

PREFIX = "/v1/api"


def api(srv: Any, credential: str | None = None, **kwargs: Any) -> httpx.AsyncClient:
    """A client for `srv`'s API (`srv` has `.url`: a `Server` or a cluster node)."""
    headers = {"Authorization": f"Bearer {credential}"} if credential is not None else {}
    return httpx.AsyncClient(
        base_url=srv.url + PREFIX, headers=headers, trust_env=False, timeout=10, **kwargs
    )


def admin_token(who: Person | None = None) -> str:
    """A host token (with `iat`) of a fresh admin account, or of `who`."""
    return (who or person("admin")).token(iat=time.time())


def user_token(role: str = "user") -> str:
    return person(role).token(iat=time.time())


def create_key(srv: Any, name: str | None = None, read_only: bool = False) -> str:
    """A new API key on the database of `srv` (a `Server` or a cluster node), by the CLI."""
    name = name or f"key-{uuid.uuid4().hex[:8]}"
    args = ["api-keys", "create", name, *(["--read-only"] if read_only else [])]
    proc = run_kefu(args, srv.env, srv.data_dir)
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    key = proc.stdout.strip().splitlines()[-1].strip()
    assert key.startswith("kefu_"), proc.stdout
    remember(key)
    return key


def error_of(resp: httpx.Response, status: int) -> str:
    """The response is the API's error shape with `status`; its message."""
    assert resp.status_code == status, f"{resp.status_code} {resp.text}"
    body = resp.json()
    assert set(body) == {"status", "message"} and body["status"] == status, body
    assert isinstance(body["message"], str) and body["message"], body
    return str(body["message"])


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest) -> Iterator[str]:
    """The database kind a test's server runs on; PostgreSQL gets a fresh database."""
    if request.param == "sqlite":
        yield "sqlite"
        return
    name, url = create_database("kefu_test_api")  # fails with CI=true if PostgreSQL is down
    try:
        yield url
    finally:
        drop_database(name)


def backend_settings(backend: str) -> dict[str, Any]:
    """`make_server` settings for the `backend` fixture's value."""
    return {} if backend == "sqlite" else {"database_url": backend}
