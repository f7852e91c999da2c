"""`GET /healthz` and `GET /readyz` on one node (SQLite): the store must take a write."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from support.servers import MakeServer, Server

pytestmark = pytest.mark.timeout(90)


async def get(srv: Server, path: str, method: str = "GET") -> httpx.Response:
    async with httpx.AsyncClient(trust_env=False, timeout=10) as http:
        return await http.request(method, f"{srv.url}{path}")


async def readyz_until(srv: Server, status: int, timeout: float = 30.0) -> dict[str, Any]:
    """Poll /readyz until it answers `status`; its body."""
    deadline = time.monotonic() + timeout
    while True:
        resp = await get(srv, "/readyz")
        if resp.status_code == status:
            body: dict[str, Any] = resp.json()
            return body
        assert time.monotonic() < deadline, f"/readyz never answered {status}: {resp.text}"
        await asyncio.sleep(0.1)


async def test_healthz_and_readyz_answer_on_a_healthy_node(make_server: MakeServer) -> None:
    srv = make_server()
    resp = await get(srv, "/healthz")
    assert resp.status_code == 200
    assert resp.json() == {"status": "ok"}
    resp = await get(srv, "/readyz")
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"status": "ready", "checks": {"store": "ok"}}
    assert resp.headers["cache-control"] == "no-store"


async def test_probes_take_only_get(make_server: MakeServer) -> None:
    srv = make_server()
    for path in ("/healthz", "/readyz"):
        resp = await get(srv, path, "POST")
        assert resp.status_code == 405, (path, resp.text)
        resp = await get(srv, path + "?check=everything&x=%00")  # a query changes nothing
        assert resp.status_code == 200, (path, resp.text)


async def test_readyz_fails_while_another_process_holds_the_write_lock(
    make_server: MakeServer,
) -> None:
    srv = make_server()
    await readyz_until(srv, 200)
    lock = sqlite3.connect(srv.db_path, isolation_level=None, timeout=1)
    lock.execute("BEGIN IMMEDIATE")  # what a stuck backup or migration would hold
    try:
        body = await readyz_until(srv, 503)
        assert body["status"] == "not ready"
        assert body["checks"]["store"].startswith("no write committed within"), body
        health = await get(srv, "/healthz")  # the process itself is fine
        assert health.status_code == 200
    finally:
        lock.execute("ROLLBACK")
        lock.close()
    body = await readyz_until(srv, 200)
    assert body["checks"] == {"store": "ok"}


@contextlib.contextmanager
def immutable(path: Path) -> Iterator[None]:
    """`chattr +i`: no process may write the file, not even root, through fds already open."""
    subprocess.run(["chattr", "+i", str(path)], check=True, capture_output=True)
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", str(path)], check=True, capture_output=True)


def can_make_immutable(directory: Path) -> bool:
    probe = directory / "chattr-probe"
    probe.write_text("x")
    try:
        with immutable(probe):
            try:
                probe.write_text("y")
            except PermissionError:
                return True
        return False
    except (OSError, subprocess.CalledProcessError):
        return False
    finally:
        with contextlib.suppress(OSError):
            probe.unlink()


async def test_readyz_fails_while_the_database_file_is_unwritable(
    make_server: MakeServer, tmp_path: Path
) -> None:
    if not can_make_immutable(tmp_path):
        pytest.skip("chattr +i is not available here (needs root and ext4/xfs/btrfs)")
    srv = make_server()
    await readyz_until(srv, 200)
    wal = Path(f"{srv.db_path}-wal")  # where every commit writes, in WAL mode
    assert wal.exists()
    with immutable(wal):
        body = await readyz_until(srv, 503)
        assert body["checks"]["store"] == "write failed (StoreUnavailable)", body
    body = await readyz_until(srv, 200)
    assert body == {"status": "ready", "checks": {"store": "ok"}}
    assert "readiness: store check failed" in srv.stderr()  # the details go to the log
