"""SQLite store: one writer connection for the write path, pooled connections for reads.

* The **writer** runs the SQL of `backend.SqliteBackend` on one `sqlite3`
  connection: WAL, `synchronous` NORMAL (a commit survives a process crash,
  the last ones may be lost on power loss) or FULL (durable). With NORMAL it
  runs on the event loop (`on_loop.OnTheLoop`, driven by `AsyncWriter`), with
  FULL on the group-commit thread (`ThreadWriter`).
* **Reads** and account writes run the portable SQLAlchemy Core functions of
  `queries.py` on a pooled sync engine in `asyncio.to_thread`; in WAL mode they
  never block the writer and see only committed data. Reads do not wait for
  queued writes: `await store.flush()` first to read your own writes. With
  NORMAL, accounts are read by key on the writer's connection, on the loop
  (an indexed lookup costs less than the thread hop).
* `rate`, `upsert_account` and `claim_epoch` go through the writer FIFO, so
  they are ordered after the records queued before them.
* **WAL checkpoints** are the store's `Checkpoints` (`checkpoints.py`): with
  NORMAL a `Checkpointer` copies the WAL from a thread of its own and makes it
  start over under steady load; with FULL the writer's connection runs
  SQLite's automatic checkpoints.
* Errors: driver and file-system errors leave the store as `StoreUnavailable`
  (`StoreEdge`).

Limits: one process should own a database file (the writer is the only
message writer; a second process would contend for the write lock through
`busy_timeout`). `:memory:` databases are refused (the writer and the readers
need to share the file). Foreign keys are enforced (as PostgreSQL does), so
conversations and queue entries need their accounts, and messages their
conversation. A read that keeps one snapshot open keeps the WAL from starting
over while it lasts, and a writer committing as fast as it can fills the WAL to
several times `WAL_RESTART_BYTES` between restarts (see `checkpointer`).
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import time
from collections.abc import Callable
from typing import Any, Concatenate, ParamSpec, TypeVar

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import URL
from sqlalchemy.exc import SQLAlchemyError

from kefu.core.model import AccountKind
from kefu.store import queries
from kefu.store.admin import AdminQueries
from kefu.store.base import (
    Account,
    AccountExists,
    StoreError,
)
from kefu.store.chat_reads import ChatReads
from kefu.store.edge import StoreEdge
from kefu.store.reports import Reports
from kefu.store.sqlite.backend import SqliteBackend, sqlite_path
from kefu.store.sqlite.checkpointer import Checkpointer
from kefu.store.sqlite.checkpoints import AutoCheckpoints, Checkpoints, CheckpointStats
from kefu.store.sqlite.on_loop import OnTheLoop
from kefu.store.webhooks import WebhookQueries
from kefu.store.writer import AsyncWriter, ThreadWriter, UpsertAccount

P = ParamSpec("P")
T = TypeVar("T")

DRIVER_ERRORS = (sqlite3.Error, SQLAlchemyError)


class SqliteStore(AdminQueries, ChatReads, Reports, WebhookQueries, StoreEdge):
    """The `Store` protocol on one SQLite file (see the module docstring for limits)."""

    def __init__(
        self,
        url: str,
        synchronous: str = "NORMAL",
        *,
        busy_timeout: float = 5.0,
        max_batch: int = 512,
        clock: Callable[[], float] = time.time,
    ) -> None:
        synchronous = synchronous.upper()
        if synchronous not in ("NORMAL", "FULL"):
            raise ValueError(f"synchronous must be NORMAL or FULL, got {synchronous!r}")
        self.path = os.path.abspath(sqlite_path(url))
        self.busy_timeout = busy_timeout
        self._clock = clock
        self.backend = SqliteBackend(self.path, synchronous, busy_timeout)
        self.inline = synchronous == "NORMAL"
        self.checkpoints: Checkpoints
        writer: AsyncWriter | ThreadWriter
        if self.inline:
            on_loop = OnTheLoop(self.backend)
            writer = AsyncWriter(on_loop, max_batch=max_batch)
            self.checkpoints = Checkpointer(self.path, on_loop, busy_timeout=busy_timeout)
        else:
            writer = ThreadWriter(self.backend, max_batch=max_batch)
            self.checkpoints = AutoCheckpoints()
        super().__init__(writer, DRIVER_ERRORS)
        self._engine: Engine | None = None

    @property
    def checkpoint_stats(self) -> CheckpointStats:
        """What the checkpoints did (zero with synchronous=FULL: SQLite's own run then)."""
        return self.checkpoints.stats

    async def start(self) -> None:
        await self.guarded(self.writer.start())
        self.checkpoints.start()
        engine = create_engine(
            URL.create("sqlite", database=self.path),
            hide_parameters=True,  # errors must not carry message bodies into logs
            connect_args={"check_same_thread": False, "timeout": self.busy_timeout},
        )
        event.listen(engine, "connect", self._on_connect)
        self._engine = engine

    def _on_connect(self, dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.execute(f"PRAGMA busy_timeout={int(self.busy_timeout * 1000)}")
        dbapi_connection.execute("PRAGMA foreign_keys=ON")

    async def close(self) -> None:
        try:
            await self.writer.stop()
            await self.checkpoints.stop()  # after the writer: it empties the WAL
        finally:
            if self._engine is not None:
                self._engine.dispose()
                self._engine = None

    # -- cold path ------------------------------------------------------------
    async def _run(
        self, fn: Callable[Concatenate[Connection, P], T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        engine = self._engine
        if engine is None:
            raise StoreError("store is not started")

        def call() -> T:
            with engine.connect() as conn:
                return fn(conn, *args, **kwargs)

        return await self.guarded(asyncio.to_thread(call))

    def _read_account(self, by: str, value: str) -> Account | None:
        """An account by key on the writer's connection, on the loop (synchronous=NORMAL)."""
        with self.translated():
            return self.backend.read_account(by, value)

    def _inline(self) -> bool:
        return self.inline and self.backend.connected

    async def create_account(self, account: Account) -> Account:
        return await self._run(queries.create_account, account, self._clock())

    async def get_account(self, account_id: str) -> Account | None:
        if self._inline():
            return self._read_account("id", account_id)
        return await self._run(queries.get_account, account_id)

    async def get_account_by_username(
        self, username: str, kind: AccountKind = AccountKind.LOCAL
    ) -> Account | None:
        if self._inline() and kind is AccountKind.LOCAL:
            return self._read_account("username", username)
        return await self._run(queries.get_account_by_username, username, kind)

    async def get_external_account(self, external_id: str) -> Account | None:
        if self._inline():
            return self._read_account("external", external_id)
        return await self._run(queries.get_external_account, external_id)

    async def upsert_account(self, account: Account) -> None:
        """Through the writer, so a burst of new accounts shares one commit."""
        if account.kind is not AccountKind.EXTERNAL or account.external_id is None:
            raise ValueError("only external accounts are upserted (from host tokens)")
        if not await self.writer.call(UpsertAccount(account, self._clock())):
            raise AccountExists(f"account {account.id!r} / {account.username!r} is taken")
