"""Run the schema migrations programmatically: no alembic.ini at run time.

`upgrade(url)` is what `kefu db upgrade` calls; it is idempotent and safe to
run from two processes at once (see `kefu/migrations/env.py`). The migration
scripts are found next to this package (`kefu/migrations`), so it works from
an installed wheel, but not from a zip import.

A SQLite database holds password hashes and every message, so `upgrade`
creates its file with mode 0600 before SQLite opens it (SQLite gives the -wal,
-shm and -journal files it creates the mode of the database file), and takes
group and world access away from such files that already exist, saying so in
one warning.

Limits: synchronous; for `postgresql+asyncpg` it runs its own event loop, so
call it from synchronous code or `asyncio.to_thread`, never from inside a
running event loop. Files another user owns cannot be made private: a warning
says so and the upgrade goes on.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import stat
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy.engine import make_url

from kefu.store.base import StoreError

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"
FILE_TEMPLATE = "%%(year)d_%%(month).2d_%%(day).2d_%%(rev)s_%%(slug)s"

# The files SQLite keeps for a database, by suffix; all hold its data.
SQLITE_SUFFIXES = ("", "-wal", "-shm", "-journal")
PRIVATE_MODE = 0o600

log = logging.getLogger("kefu.store")

# Drivers tried, in order, for a bare `postgresql://` URL.
_PG_DRIVERS = (("psycopg", "psycopg"), ("psycopg2", "psycopg2"), ("asyncpg", "asyncpg"))


def resolve_url(database_url: str) -> str:
    """The URL migrations connect with.

    SQLite URLs are kept. `postgresql://` (or `postgres://`) gets the first
    installed driver of psycopg, psycopg2, asyncpg; an explicit driver is kept.
    """
    url = make_url(database_url)
    backend = url.get_backend_name()
    if backend == "sqlite":
        return database_url
    if backend in ("postgresql", "postgres"):
        if "+" in url.drivername:
            return database_url
        for module, driver in _PG_DRIVERS:
            if importlib.util.find_spec(module) is not None:
                return url.set(drivername=f"postgresql+{driver}").render_as_string(
                    hide_password=False
                )
        raise StoreError("PostgreSQL support needs kefu[cluster] (pip install 'kefu[cluster]')")
    raise ValueError(f"unsupported database URL scheme: {url.drivername!r}")


def alembic_config(database_url: str) -> Config:
    """An Alembic `Config` for kefu's migrations and this database (for `alembic.command`)."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("file_template", FILE_TEMPLATE)
    cfg.attributes["database_url"] = resolve_url(database_url)
    return cfg


def upgrade(database_url: str, revision: str = "head") -> None:
    """Bring the database's schema up to `revision` (creating a SQLite file 0600, its folder)."""
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        from kefu.store.sqlite import sqlite_path

        private_sqlite_files(Path(sqlite_path(database_url)))
    command.upgrade(alembic_config(database_url), revision)


def private_sqlite_files(path: Path) -> None:
    """Create the database file `path` with mode 0600 if missing; make its existing files 0600.

    Files that other users may read are changed, with one warning naming them.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    # an existing database, or one another process created just now, is kept
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_MODE))
    tightened: list[str] = []
    failed: list[str] = []
    old_modes: set[str] = set()
    for suffix in SQLITE_SUFFIXES:
        file = path.with_name(path.name + suffix)
        try:
            mode = stat.S_IMODE(file.stat().st_mode)
        except FileNotFoundError:
            continue
        if not mode & 0o077:
            continue
        old_modes.add(f"{mode:04o}")
        try:
            file.chmod(PRIVATE_MODE)
            tightened.append(file.name)
        except OSError:
            failed.append(file.name)
    if tightened:
        log.warning(
            "%s in %s could be read by other users (mode %s); made private (0600)",
            ", ".join(tightened),
            path.parent,
            "/".join(sorted(old_modes)),
        )
    if failed:
        log.warning(
            "%s in %s can be read by other users and could not be made private: chmod 600 them",
            ", ".join(failed),
            path.parent,
        )


def current(database_url: str) -> str | None:
    """The revision the database is at, or None if never migrated (sync drivers only)."""
    from alembic.runtime.migration import MigrationContext
    from sqlalchemy import create_engine, pool

    if make_url(database_url).get_backend_name() == "sqlite":
        from kefu.store.sqlite import sqlite_path

        if not Path(sqlite_path(database_url)).exists():
            return None  # do not create an empty file just to look
    engine = create_engine(resolve_url(database_url), poolclass=pool.NullPool)
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    finally:
        engine.dispose()


def head() -> str | None:
    """The newest revision among kefu's migration scripts."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config("sqlite:///unused.db")).get_current_head()
