"""`kefu check`: can this configuration serve? Each check is one line, in a stable format.

    ok <check>: <detail>
    FAIL <check>: <what is wrong>

The checks, in this order: `settings` (the KEFU_* variables and `.env` are
valid; if not, nothing else is checked), `database` (reachable, and migrated
to this kefu's head revision), `broker` (only with KEFU_BROKER_URL: Redis
answers), `secret` (KEFU_SECRET is set, or the generated key's file can be
read or created; a cluster needs KEFU_SECRET). Nothing is created or
changed: a database that was never migrated is reported, not migrated.

No line shows a password: URLs are shown with `***` in its place, and
errors by their driver's first line.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from pathlib import Path

from kefu.settings import Settings

TIMEOUT = 10.0  # seconds to reach the database or the broker


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str

    def line(self) -> str:
        return f"{'ok' if self.ok else 'FAIL'} {self.name}: {self.detail}"


def run() -> list[Check]:
    """Every check, in order: one line each, one per invalid setting."""
    from pydantic import ValidationError

    try:
        settings = Settings()
    except ValidationError as exc:  # the value is not shown: it may be a secret
        return [
            Check("settings", False, f"KEFU_{'_'.join(map(str, e['loc'])).upper()}: {e['msg']}")
            for e in exc.errors()
        ]
    except Exception as exc:  # e.g. an unreadable .env
        return [Check("settings", False, reason(exc))]
    checks = [Check("settings", True, "valid"), database(settings.database_url)]
    if settings.broker_url:
        checks.append(broker(settings))
    checks.append(secret(settings))
    return checks


def reason(exc: BaseException) -> str:
    """`exc` in one line; for an error SQLAlchemy wraps, the driver's own."""
    orig = getattr(exc, "orig", None)  # the DB-API error; asyncpg's own is its cause
    cause = exc if orig is None else orig.__cause__ or orig
    line = next((ln.strip() for ln in str(cause).splitlines() if ln.strip()), "")
    name = type(cause).__name__
    return f"{name}: {line}"[:300] if line else name


def shown_url(url: str) -> str:
    """A database or broker URL with its password replaced by `***` (SQLite's as its file)."""
    from sqlalchemy.engine import make_url

    try:
        if url.startswith("sqlite:"):
            from kefu.store.sqlite import sqlite_path

            return sqlite_path(url)
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # what make_url raises for a malformed URL varies
        return "(an unparsable URL)"


# -- database ----------------------------------------------------------------------------
def database(url: str) -> Check:
    from kefu.store.migrate import head

    where = f"database {shown_url(url)}"
    try:
        if url.startswith("sqlite:"):
            from kefu.store.sqlite import sqlite_path

            if not Path(sqlite_path(url)).exists():
                return Check(where, False, "no database file: `kefu db upgrade` creates it")
        at = revision(url)
    except Exception as exc:
        return Check(where, False, f"cannot be used: {reason(exc)}")
    newest = head()
    if at is None:
        return Check(where, False, "not migrated: `kefu db upgrade` creates the schema")
    if at != newest:
        return Check(where, False, f"at revision {at}, this kefu needs {newest}: `kefu db upgrade`")
    return Check(where, True, f"reachable, at revision {at} (head)")


def revision(url: str) -> str | None:
    """The database's migration revision, None if never migrated; any driver, with a timeout."""
    from sqlalchemy import create_engine, pool
    from sqlalchemy.engine import make_url

    from kefu.store.migrate import current, resolve_url

    resolved = make_url(resolve_url(url))
    if resolved.get_backend_name() == "sqlite":
        return current(url)
    if resolved.drivername.endswith("+asyncpg"):
        return asyncio.run(_async_revision(resolved.render_as_string(hide_password=False)))
    engine = create_engine(
        resolved, poolclass=pool.NullPool, connect_args={"connect_timeout": int(TIMEOUT)}
    )
    try:
        with engine.connect() as conn:
            return _read_revision(conn)
    finally:
        engine.dispose()


async def _async_revision(url: str) -> str | None:
    from sqlalchemy import pool
    from sqlalchemy.ext.asyncio import create_async_engine

    engine = create_async_engine(url, poolclass=pool.NullPool, connect_args={"timeout": TIMEOUT})
    try:
        async with engine.connect() as conn:
            return await conn.run_sync(_read_revision)
    finally:
        await engine.dispose()


def _read_revision(conn: object) -> str | None:
    from alembic.runtime.migration import MigrationContext

    return MigrationContext.configure(conn).get_current_revision()  # type: ignore[arg-type]


# -- broker ------------------------------------------------------------------------------
def broker(settings: Settings) -> Check:
    where = f"broker {shown_url(settings.broker_url)}"
    try:
        nodes = asyncio.run(asyncio.wait_for(_live_nodes(settings), TIMEOUT + 1))
    except TimeoutError:
        return Check(where, False, f"no answer within {TIMEOUT:.0f} s")
    except Exception as exc:
        return Check(where, False, f"unreachable: {reason(exc)}")
    return Check(where, True, f"reachable, {nodes} live nodes")


async def _live_nodes(settings: Settings) -> int:
    from kefu.broker import open_broker

    found = open_broker(settings)
    await found.start()
    try:
        return len(await found.live_nodes())
    finally:
        await found.close()


# -- signing secret ----------------------------------------------------------------------
def secret(settings: Settings) -> Check:
    if settings.secret:
        return Check("secret", True, "KEFU_SECRET is set")
    if settings.broker_url:
        return Check("secret", False, "a cluster node needs KEFU_SECRET, the same on every node")
    path = settings.secret_file()
    if path.exists():
        if os.access(path, os.R_OK) and path.read_text().strip():
            return Check("secret", True, f"kept in {path}")
        return Check("secret", False, f"{path} cannot be read or is empty")
    folder = next((p for p in (path.parent, *path.parent.parents) if p.exists()), None)
    if folder is not None and folder.is_dir() and os.access(folder, os.W_OK | os.X_OK):
        return Check("secret", True, f"none yet: made in {path} on first start")
    return Check("secret", False, f"none, and {path} cannot be created")
