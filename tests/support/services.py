"""The real services the cluster-side tests need: PostgreSQL and Redis.

`require_postgres()` / `require_redis()` return a URL, or end the test: in CI
(`support.ci.in_ci()`: CI=1, true or yes) a missing service is a failure (CI
must not pass by skipping), on a developer machine it is a skip. Override
the addresses with KEFU_TEST_POSTGRES (an admin URL; databases are created
beside it) and KEFU_TEST_REDIS.
"""

from __future__ import annotations

import asyncio
import os
import threading
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, NoReturn, TypeVar

import pytest

from support.ci import in_ci

PG_ADMIN_URL = os.environ.get("KEFU_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("KEFU_TEST_REDIS", "redis://127.0.0.1:6379/0")

T = TypeVar("T")
_checked: dict[str, str | None] = {}  # service -> None if fine, else the reason


def in_thread(fn: Callable[[], Awaitable[T]]) -> T:
    """Run a coroutine function to completion on a private loop (safe inside a running loop)."""
    box: dict[str, Any] = {}

    def main() -> None:
        try:
            box["value"] = asyncio.run(fn())  # type: ignore[arg-type]
        except BaseException as exc:
            box["error"] = exc

    thread = threading.Thread(target=main)
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box["value"]  # type: ignore[no-any-return]


def unavailable(what: str, reason: str) -> NoReturn:
    message = f"{what} is not reachable ({reason})"
    if in_ci():
        pytest.fail(f"{message}; CI needs it running", pytrace=False)
    pytest.skip(message)


def _check(name: str, probe: Callable[[], Awaitable[None]]) -> None:
    if name not in _checked:
        try:
            in_thread(probe)
            _checked[name] = None
        except Exception as exc:
            _checked[name] = f"{type(exc).__name__}: {exc}"
    reason = _checked[name]
    if reason is not None:
        unavailable(name, reason)


def require_postgres() -> str:
    async def probe() -> None:
        import asyncpg

        conn = await asyncpg.connect(PG_ADMIN_URL, timeout=3)
        await conn.close()

    _check("PostgreSQL", probe)
    return PG_ADMIN_URL


def require_redis() -> str:
    async def probe() -> None:
        from redis.asyncio import Redis

        client = Redis.from_url(REDIS_URL, socket_connect_timeout=3, socket_timeout=3)
        try:
            await client.ping()
        finally:
            await client.aclose()

    _check("Redis", probe)
    return REDIS_URL


def database_url(name: str, admin_url: str = PG_ADMIN_URL) -> str:
    base, _, _db = admin_url.rpartition("/")
    return f"{base}/{name}"


def create_database(prefix: str = "kefu_test") -> tuple[str, str]:
    """CREATE DATABASE <prefix>_<random>; returns (name, url)."""
    admin = require_postgres()
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"

    async def create() -> None:
        import asyncpg

        conn = await asyncpg.connect(admin, timeout=5)
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()

    in_thread(create)
    return name, database_url(name, admin)


def drop_database(name: str) -> None:
    async def drop() -> None:
        import asyncpg

        conn = await asyncpg.connect(PG_ADMIN_URL, timeout=5)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()

    in_thread(drop)


def redis_prefix() -> str:
    return f"kefu-test-{uuid.uuid4().hex[:10]}:"


def wipe_redis(prefix: str, url: str = REDIS_URL) -> None:
    """Delete every key under `prefix` (what a Redis restart without persistence does)."""

    async def wipe() -> None:
        from redis.asyncio import Redis

        client = Redis.from_url(url, socket_connect_timeout=3, socket_timeout=5)
        try:
            keys = [k async for k in client.scan_iter(match=prefix + "*", count=1000)]
            if keys:
                await client.delete(*keys)
        finally:
            await client.aclose()

    in_thread(wipe)
