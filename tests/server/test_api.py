"""The admin API's foundation over real HTTP (`kefu serve`), on SQLite and PostgreSQL.

Credentials (API keys, admin tokens), the error shape, body limits, the docs
page served without any other site, and pagination's cursor checks.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import httpx
import pytest

from support.api import (
    PREFIX,
    admin_token,
    api,
    backend,  # noqa: F401 - the fixture
    backend_settings,
    create_key,
    error_of,
    user_token,
)
from support.client import person
from support.servers import MakeServer, Server, run_kefu

pytestmark = pytest.mark.timeout(90)


@pytest.fixture
def srv(backend: str, make_server: MakeServer) -> Server:  # noqa: F811
    # `backend` first: its database is dropped after the server has stopped
    return make_server(**backend_settings(backend))


async def test_credentials(srv: Server) -> None:
    key = create_key(srv, "ci")
    read_only = create_key(srv, "dashboard", read_only=True)
    async with api(srv, key) as http:
        resp = await http.get("/whoami")
        assert resp.status_code == 200, resp.text
        assert resp.json() | {"id": "-"} == {
            "kind": "key",
            "id": "-",
            "name": "ci",
            "read_only": False,
        }
    async with api(srv, read_only) as http:
        assert (await http.get("/whoami")).json()["read_only"] is True
    boss = person("admin")
    async with api(srv, admin_token(boss)) as http:
        resp = await http.get("/whoami")
        assert resp.json() == {
            "kind": "account",
            "id": boss.id,
            "name": boss.username,
            "read_only": False,
        }

    # no credentials, a bad scheme, an unknown key, a bad or expired token: 401
    async with api(srv) as http:
        resp = await http.get("/whoami")
        assert "Bearer" in error_of(resp, 401)
        assert resp.headers["www-authenticate"] == "Bearer"
        assert error_of(await http.get("/whoami", headers={"Authorization": f"Basic {key}"}), 401)
    for bad in ("kefu_" + "x" * 43, key[:-1], "not-a-token", person("admin").token(ttl=-10)):
        async with api(srv, bad) as http:
            error_of(await http.get("/whoami"), 401)
    # an account that is not an admin: 403, for users and waiters alike
    for role in ("user", "waiter"):
        async with api(srv, user_token(role)) as http:
            assert "admin" in error_of(await http.get("/whoami"), 403)


async def test_a_revoked_key_is_refused_at_once_and_listed(srv: Server) -> None:
    key = create_key(srv, "soon-gone")
    async with api(srv, key) as http:
        assert (await http.get("/whoami")).status_code == 200
        revoked = run_kefu(["api-keys", "revoke", "soon-gone"], srv.env, srv.data_dir)
        assert revoked.returncode == 0, revoked.stderr
        error_of(await http.get("/whoami"), 401)
    listed = run_kefu(["api-keys", "list"], srv.env, srv.data_dir)
    assert listed.returncode == 0, listed.stderr
    (line,) = [ln for ln in listed.stdout.splitlines() if " soon-gone " in ln]
    assert key not in listed.stdout  # only the first characters are shown
    assert key[:12] + "…" in line
    assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ\s*$", line), line  # revoked when
    assert line.split()[-4] != "-"  # last used: the whoami above


async def test_errors_are_json_with_the_right_status(srv: Server) -> None:
    key = create_key(srv)
    async with api(srv, key) as http:
        error_of(await http.get("/no/such/thing"), 404)
        error_of(await http.delete("/whoami"), 405)
        # a body must be JSON (415) and at most 64 KiB (413), announced or streamed
        resp = await http.post("/whoami", content=b"x=1", headers={"Content-Type": "text/plain"})
        error_of(resp, 415)
        big = b'{"a":"' + b"x" * 70_000 + b'"}'
        resp = await http.post("/whoami", content=big, headers={"Content-Type": "application/json"})
        error_of(resp, 413)

        async def stream() -> AsyncIterator[bytes]:
            for _ in range(100):
                yield b"x" * 1024

        resp = await http.post(
            "/whoami", content=stream(), headers={"Content-Type": "application/json"}
        )
        error_of(resp, 413)


async def test_docs_and_openapi_are_served_from_kefu_itself(srv: Server) -> None:
    async with httpx.AsyncClient(base_url=srv.url, trust_env=False, timeout=10) as http:
        spec = await http.get(f"{PREFIX}/openapi.json")
        assert spec.status_code == 200
        body = spec.json()
        assert body["servers"] == [{"url": PREFIX}]
        assert "/whoami" in body["paths"]
        assert body["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
        page = await http.get(f"{PREFIX}/docs")
        assert page.status_code == 200
        assert "script-src 'self'" in page.headers["content-security-policy"]
        assert "http" not in page.text  # no other site: every URL is relative
        assets = re.findall(r'(?:src|href)="(docs/[^"]+)"', page.text)
        assert len(assets) == 3, page.text
        for asset in assets:
            resp = await http.get(f"{PREFIX}/{asset}")
            assert resp.status_code == 200, asset
            assert len(resp.content) > 300
        error_of(await http.get(f"{PREFIX}/docs/LICENSE"), 404)  # only the page's own files
        error_of(await http.get(f"{PREFIX}/docs/..%2F__init__.py"), 404)


async def test_a_socket_and_the_api_share_the_server(srv: Server) -> None:
    """The chat still works beside the API (the API is mounted, not in front of the sockets)."""
    waiter = await srv.waiter()
    user = await srv.user()
    await user.send({"type": "connect"})
    await user.expect("connect_success")
    await waiter.expect("new_connection")
    async with api(srv, create_key(srv)) as http:
        assert (await http.get("/whoami")).status_code == 200
    await user.send_text("still here")
    await waiter.expect("message_text")
