"""`kefu backup`: a consistent copy of a live database and the signing key beside it.

SQLite: the online backup API (`sqlite3.Connection.backup`) copies the whole
database in one step, that is inside one read transaction, so the copy is the
database as of one commit, while the server goes on writing (in WAL mode a
reader blocks no writer, and the step never restarts). Copying the file
instead would miss every commit still in the `-wal` file, or catch a page
half written. The copy is checked (`PRAGMA quick_check`) and only then
renamed into place, so a backup path either holds a whole copy or nothing.

The signing key kefu generated (`Settings.secret_file()`) goes beside the copy
under the name a server started on the copy looks for (`<copy>.secret`):
without it every token issued before the backup would be refused after a
restore. Both files are created 0600: they hold every message and the key
that signs every token.

PostgreSQL: pg_dump already takes a consistent snapshot of a live database
and comes with its restore tool; kefu does not copy it, it says what to run
(`postgres_instructions`).
"""

from __future__ import annotations

import contextlib
import os
import shlex
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import URL, make_url

from kefu.settings import Settings

PRIVATE = 0o600


class BackupError(Exception):
    """The backup was not made; the message says why, in one line."""


class UseDumpTool(BackupError):
    """Not a database kefu copies itself: `instructions` says what to run instead."""

    def __init__(self, message: str, instructions: str) -> None:
        super().__init__(message)
        self.instructions = instructions


@dataclass(frozen=True)
class Copied:
    source: Path
    database: Path  # the copy
    size: int  # its bytes
    secret: Path | None  # the copied key file; None if there was none to copy
    secret_in_environment: bool  # KEFU_SECRET is set: the key is not in any file


def backup(settings: Settings, target: Path) -> Copied:
    """Copy the database of `settings` (and its key file) to `target`; see the module doc."""
    try:
        url = make_url(settings.database_url)
    except Exception as exc:
        raise BackupError(f"cannot parse KEFU_DATABASE_URL ({type(exc).__name__})") from None
    backend = url.get_backend_name()
    if backend == "postgresql":
        raise UseDumpTool(
            "kefu backup copies SQLite databases only; for PostgreSQL run pg_dump (above)",
            postgres_instructions(url, target, settings),
        )
    if backend != "sqlite" or not url.database or url.database == ":memory:":
        raise BackupError(f"cannot back up a {backend} database named {url.database!r}")
    return copy_sqlite(
        Path(url.database),
        target,
        None if settings.secret else settings.secret_file(),
        secret_in_environment=bool(settings.secret),
    )


def copy_sqlite(
    source: Path, target: Path, secret_file: Path | None, *, secret_in_environment: bool = False
) -> Copied:
    """Copy the SQLite database `source` to `target` and `secret_file`, if it exists, beside it."""
    if not source.is_file():
        raise BackupError(f"no database at {source}")
    key_target = secret_path(target)
    for path in (target, key_target):
        if path.exists() or path.is_symlink():
            raise BackupError(f"{path} exists; back up to a new path")
    target.parent.mkdir(parents=True, exist_ok=True)
    key = secret_file if secret_file is not None and secret_file.is_file() else None

    with _partial(target) as partial_db, _partial(key_target) as partial_key:
        _snapshot(source, partial_db)
        if key is not None:
            _write_private(partial_key, key.read_bytes())
        # the key first: a copy found without its key would refuse every earlier token
        if key is not None:
            os.replace(partial_key, key_target)
        os.replace(partial_db, target)
        _sync_directory(target.parent)
    return Copied(
        source=source,
        database=target,
        size=target.stat().st_size,
        secret=key_target if key is not None else None,
        secret_in_environment=secret_in_environment,
    )


def secret_path(database: Path) -> Path:
    """Where a server started on the database file `database` looks for its generated key."""
    # model_construct: no validation and no environment, only the naming rule
    settings = Settings.model_construct(database_url=f"sqlite:///{database}")
    return settings.secret_file()


def postgres_instructions(url: URL, target: Path, settings: Settings) -> str:
    """What to run to back up and restore a PostgreSQL database; the URL without its password."""
    name = url.database or "kefu"
    where = shlex.quote(_libpq(url, name))
    restored = shlex.quote(_libpq(url, f"{name}_restored"))
    dump = shlex.quote(str(target))
    lines = [
        "Back up (a consistent snapshot; the nodes keep running):",
        "",
        f"  pg_dump --format=custom --file={dump} {where}",
        "",
        "The password comes from PGPASSWORD or ~/.pgpass; pg_dump must be at least as new",
        "as the server.",
        "",
        "Restore into a new, empty database, with every node stopped:",
        "",
        f"  createdb --maintenance-db={where} --template=template0"
        f" {shlex.quote(f'{name}_restored')}",
        f"  pg_restore --no-owner --exit-on-error --dbname={restored} {dump}",
        "",
        "then point KEFU_DATABASE_URL of every node at it and start them.",
    ]
    if settings.secret:
        lines.append("Keep KEFU_SECRET with the backup: tokens signed with it stay valid.")
    else:
        lines.append(
            f"Keep the signing key {settings.secret_file()} with the backup (or set KEFU_SECRET)."
        )
    return "\n".join(lines)


# ---------------------------------------------------------------------------- helpers


def _libpq(url: URL, database: str) -> str:
    """`url` as the PostgreSQL tools read it: no driver name, no password, `database`."""
    query = dict(url.query)
    if "ssl" in query and "sslmode" not in query:  # asyncpg's name for libpq's sslmode
        query["sslmode"] = query.pop("ssl")
    plain = URL.create(
        "postgresql",
        username=url.username,
        host=url.host,
        port=url.port,
        database=database,
        query=query,
    )
    return plain.render_as_string(hide_password=False)


def _snapshot(source: Path, partial: Path) -> None:
    """The online backup of `source` into the (empty, private) file `partial`, checked."""
    # mode=rw: never create a database that is not there; the backup only reads it
    src = sqlite3.connect(f"{source.absolute().as_uri()}?mode=rw", uri=True, timeout=30)
    try:
        dst = sqlite3.connect(partial)
        try:
            src.backup(dst)  # pages=-1: one step, one read transaction, one moment
            found = dst.execute("PRAGMA quick_check").fetchone()
            if found is None or found[0] != "ok":
                raise BackupError(f"the copy of {source} fails its check: {found!r}")
        finally:
            dst.close()
    except sqlite3.Error as exc:
        raise BackupError(f"cannot copy {source}: {exc}") from None
    finally:
        src.close()
    with open(partial, "rb+") as f:
        os.fsync(f.fileno())


@contextlib.contextmanager
def _partial(final: Path) -> Iterator[Path]:
    """A fresh 0600 file beside `final`, removed (with its journals) unless renamed."""
    partial = final.with_name(f".{final.name}.{os.getpid()}.partial")
    _write_private(partial, b"")
    try:
        yield partial
    finally:
        for leftover in (partial, *(Path(f"{partial}{s}") for s in ("-journal", "-wal", "-shm"))):
            with contextlib.suppress(FileNotFoundError):
                leftover.unlink()


def _write_private(path: Path, data: bytes) -> None:
    """Write `data` to `path` with mode 0600 whatever the umask; the file may exist (empty)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, PRIVATE)
    with os.fdopen(fd, "wb") as f:
        os.fchmod(fd, PRIVATE)  # an existing file keeps its mode on open: set it
        f.write(data)
        f.flush()
        os.fsync(fd)


def _sync_directory(directory: Path) -> None:
    """Make the renames durable (the directory entries), where the platform allows it."""
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
