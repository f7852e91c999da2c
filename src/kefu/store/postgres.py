"""PostgreSQL store: asyncpg for the message path, SQLAlchemy (asyncpg dialect) for the rest.

* The **writer** is one asyncpg connection owned by `AsyncWriter`:
  the same group commit as SQLite, one transaction per batch. A run of
  consecutive messages in a batch is one statement
  (`INSERT ... SELECT FROM unnest(...) ON CONFLICT (sender_id, op_id) DO
  NOTHING RETURNING id`), then one lookup for the rows that were already
  there (retries and conflicts). Lifecycle records are single statements.
  A lost connection fails the batch (`StoreUnavailable` for its messages;
  lifecycle records are retried, for up to about two minutes here, since a
  PostgreSQL restart is an expected event in a cluster) and the next batch
  reconnects.
* **Reads** and account writes run the portable functions of `queries.py`
  through `AsyncConnection.run_sync` on a pooled `postgresql+asyncpg`
  engine (`pool_pre_ping`, so connections a restart killed are replaced).
  Driver and connection errors there become `StoreUnavailable` (`StoreEdge`).
* A `CheckEpoch` (a leader's guarded records) is an `UPDATE` of the one
  `leader_epoch` row that must match: its row lock, held to the commit,
  orders the batch against a concurrent `claim_epoch` of another node, which
  updates the same row (READ COMMITTED re-reads a row it waited for, so a
  check that waited for a newer claim finds it and fails).

Limits: the schema must be migrated (`kefu db upgrade`). `busy_timeout` is
PostgreSQL's `lock_timeout` for the writer. Several nodes may share the
database (each has its own writer); queue `seq` ties are broken by the
single switchboard leader's write order.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable, Sequence
from typing import Any, Concatenate, ParamSpec, TypeVar

import asyncpg
from sqlalchemy import Connection
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from kefu.core.commands import CloseConversation, Dequeue, Enqueue, OpenConversation
from kefu.core.model import AccountKind
from kefu.store import queries
from kefu.store.admin import AdminQueries
from kefu.store.base import (
    Account,
    Appended,
    Fenced,
    NewMessage,
    StoreError,
    StoreUnavailable,
)
from kefu.store.chat_reads import ChatReads
from kefu.store.edge import StoreEdge
from kefu.store.outbox import Outbox, Subscriptions
from kefu.store.reports import Reports
from kefu.store.tables import from_us, metadata, to_us
from kefu.store.webhooks import WebhookQueries
from kefu.store.writer import (
    AsyncWriter,
    CheckEpoch,
    ClaimEpoch,
    Ping,
    SetRate,
    WriteOp,
    message_runs,
)

P = ParamSpec("P")
T = TypeVar("T")

_INSERT_MESSAGES = (
    "INSERT INTO messages (id, conversation_id, type, sender_id, receiver_id, payload, op_id,"
    " created_at) SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[],"
    " $5::text[], $6::text[], $7::text[], $8::bigint[])"
    " ON CONFLICT (sender_id, op_id) DO NOTHING RETURNING id"
)
_STORED_MESSAGES = (
    "SELECT m.sender_id, m.op_id, m.id, m.type, m.payload, m.created_at FROM messages m"
    " JOIN unnest($1::text[], $2::text[]) AS k(sender_id, op_id)"
    " ON m.sender_id = k.sender_id AND m.op_id = k.op_id"
)
_ENQUEUE = (
    "INSERT INTO queue_entries (user_id, queued_at, seq) VALUES ($1, $2,"
    " (SELECT COALESCE(MAX(seq), 0) + 1 FROM queue_entries))"
    " ON CONFLICT (user_id) DO UPDATE SET queued_at = excluded.queued_at, seq = excluded.seq"
)
_DEQUEUE = "DELETE FROM queue_entries WHERE user_id = $1"
# a departure from the queue (`Dequeue.left_at`), recorded from the entry it deletes
_DEQUEUE_EXIT = (
    "WITH gone AS (DELETE FROM queue_entries WHERE user_id = $1 RETURNING user_id, queued_at)"
    " INSERT INTO queue_exits (user_id, queued_at, left_at, served)"
    " SELECT user_id, queued_at, $2, $3 FROM gone"
)
_OPEN = (
    "INSERT INTO conversations (id, user_id, waiter_id, opened_at, queued_at)"
    " VALUES ($1, $2, $3, $4, $5) ON CONFLICT (id) DO NOTHING"
)
_CLOSE = (
    "UPDATE conversations SET closed_at = $1, close_reason = $2, rate = COALESCE(rate, $3)"
    " WHERE id = $4 AND closed_at IS NULL"
)
_RATE = "UPDATE conversations SET rate = $1 WHERE id = $2 AND rate IS NULL"
_INSERT_OUTBOX = (  # in the arrays' order, which is the order of `seq`
    "INSERT INTO webhook_outbox (event, subject, conversation_id, ref, created_at, data)"
    " SELECT e, s, c, r, t, d FROM unnest($1::text[], $2::text[], $3::text[], $4::text[],"
    " $5::bigint[], $6::text[]) WITH ORDINALITY AS u(e, s, c, r, t, d, n) ORDER BY n"
)
_CHECK_EPOCH = "UPDATE leader_epoch SET epoch = epoch WHERE id = 1 AND epoch = $1"
_CLAIM_EPOCH = "UPDATE leader_epoch SET epoch = $1 WHERE id = 1 AND epoch < $1"
_PING = "UPDATE leader_epoch SET epoch = epoch WHERE id = 1"

# A value too long for its column, or not valid for its type, is an item error
# like a constraint: the batch is run again item by item and only that item fails.
_ITEM_ERRORS = (
    asyncpg.IntegrityConstraintViolationError,
    asyncpg.DataError,  # StringDataRightTruncationError and the other SQLSTATE 22xxx
    TypeError,
    ValueError,  # asyncpg's own DataError: a parameter it could not encode
    AttributeError,
)
DRIVER_ERRORS = (SQLAlchemyError, asyncpg.PostgresError, asyncpg.InterfaceError)


def urls(database_url: str) -> tuple[str, str]:
    """(asyncpg DSN, SQLAlchemy URL) for a `postgresql[+driver]://` URL."""
    url = make_url(database_url)
    if url.get_backend_name() not in ("postgresql", "postgres"):
        raise ValueError(f"not a PostgreSQL URL: {database_url!r}")
    dsn = url.set(drivername="postgresql").render_as_string(hide_password=False)
    sa = url.set(drivername="postgresql+asyncpg").render_as_string(hide_password=False)
    return dsn, sa


def _same_payload(stored: str, new: str) -> bool:
    if stored == new:
        return True
    try:
        return bool(json.loads(stored) == json.loads(new))
    except ValueError:
        return False


def _text(payload: bytes | str) -> str:
    return payload if isinstance(payload, str) else payload.decode()


class PgBackend:
    """The SQL of the write path on one asyncpg connection (an `AsyncBatchBackend`)."""

    def __init__(self, dsn: str, *, lock_timeout: float, connect_timeout: float = 5.0) -> None:
        self.dsn = dsn
        self.lock_timeout = lock_timeout
        self.connect_timeout = connect_timeout
        self._conn: asyncpg.Connection | None = None
        self.outbox = Outbox(Subscriptions())  # each batch's webhook events (`store/outbox.py`)

    async def _connect(self) -> asyncpg.Connection:
        try:
            conn = await asyncpg.connect(
                self.dsn,
                timeout=self.connect_timeout,
                command_timeout=30,
                server_settings={
                    "lock_timeout": str(max(1, int(self.lock_timeout * 1000))),
                    "application_name": "kefu-writer",
                },
            )
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
            raise StoreUnavailable(f"cannot connect to PostgreSQL: {exc}") from exc
        self._conn = conn
        return conn

    async def open(self) -> None:
        conn = await self._connect()
        rows = await conn.fetch(
            "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"
        )
        missing = set(metadata.tables) - {r["tablename"] for r in rows}
        if missing:
            await self.close()
            raise StoreError(
                f"database is not migrated (missing {sorted(missing)}); run `kefu db upgrade`"
            )

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.close(), 2)
            if not conn.is_closed():
                conn.terminate()

    def is_item_error(self, exc: BaseException) -> bool:
        return isinstance(exc, _ITEM_ERRORS)

    async def execute(self, ops: Sequence[WriteOp], isolate: bool) -> list[Any]:
        conn = self._conn
        if conn is None or conn.is_closed():
            conn = await self._connect()
        try:
            async with conn.transaction():
                if isolate:
                    results = [await self._isolated(conn, op) for op in ops]
                else:
                    results = await self._run(conn, ops)
                outbox = self.outbox.rows(ops, results)
                if outbox:  # the batch's webhook events: one statement, in its transaction
                    columns = (list(c) for c in zip(*outbox, strict=True))
                    await conn.execute(_INSERT_OUTBOX, *columns)
                return results
        except Exception as exc:
            if not self.is_item_error(exc) and not isinstance(exc, StoreError):
                await self.close()  # a clean connection for the next batch
            raise

    async def _isolated(self, conn: asyncpg.Connection, op: WriteOp) -> Any:
        try:
            async with conn.transaction():  # a savepoint
                return (await self._run(conn, [op]))[0]
        except Exception as exc:
            if not self.is_item_error(exc):
                raise
            return exc

    async def _run(self, conn: asyncpg.Connection, ops: Sequence[WriteOp]) -> list[Any]:
        results: list[Any] = []
        for item in message_runs(ops):
            if isinstance(item, list):
                results += await self._messages(conn, item)
            else:
                results.append(await self._record(conn, item))
        return results

    async def _messages(self, conn: asyncpg.Connection, msgs: list[NewMessage]) -> list[Appended]:
        payloads = [_text(m.payload) for m in msgs]
        rows = await conn.fetch(
            _INSERT_MESSAGES,
            [m.id for m in msgs],
            [m.conversation_id for m in msgs],
            [m.type for m in msgs],
            [m.sender_id for m in msgs],
            [m.receiver_id for m in msgs],
            payloads,
            [m.op_id for m in msgs],
            [to_us(m.created) for m in msgs],
        )
        inserted = {r[0] for r in rows}
        if len(inserted) == len(msgs):
            return [Appended(id=m.id, created=m.created) for m in msgs]
        missing = [m for m in msgs if m.id not in inserted]
        found = await conn.fetch(
            _STORED_MESSAGES, [m.sender_id for m in missing], [m.op_id for m in missing]
        )
        stored = {(r[0], r[1]): r for r in found}
        out: list[Appended] = []
        for m, payload in zip(msgs, payloads, strict=True):
            if m.id in inserted:
                out.append(Appended(id=m.id, created=m.created))
                continue
            row = stored.get((m.sender_id, m.op_id))
            if row is None:  # cannot happen: DO NOTHING fires only on (sender_id, op_id)
                raise asyncpg.IntegrityConstraintViolationError(f"message {m.id} was not stored")
            same = row[3] == m.type and _same_payload(row[4], payload)
            out.append(
                Appended(id=row[2], created=from_us(row[5]), duplicate=same, conflict=not same)
            )
        return out

    async def _record(self, conn: asyncpg.Connection, op: WriteOp) -> Any:
        match op:
            case Enqueue(user_id, queued_at):
                await conn.execute(_ENQUEUE, user_id, to_us(queued_at))
            case Dequeue(user_id, served, left_at):
                if left_at is None:
                    await conn.execute(_DEQUEUE, user_id)
                else:
                    await conn.execute(_DEQUEUE_EXIT, user_id, to_us(left_at), served)
            case OpenConversation(cid, user_id, waiter_id, opened_at, queued_at):
                queued = None if queued_at is None else to_us(queued_at)
                opened = to_us(opened_at)
                status = await conn.execute(_OPEN, cid, user_id, waiter_id, opened, queued)
                return bool(status == "INSERT 0 1")  # False: it was stored already
            case CloseConversation(cid, reason, closed_at, rate):
                reason_text = str(getattr(reason, "value", reason))
                status = await conn.execute(_CLOSE, to_us(closed_at), reason_text, rate, cid)
                return bool(status == "UPDATE 1")  # False: closed already, or unknown
            case SetRate(cid, rate):
                status = await conn.execute(_RATE, rate, cid)
                return status.endswith(" 1")
            case CheckEpoch(epoch):
                if await conn.execute(_CHECK_EPOCH, epoch) != "UPDATE 1":
                    raise Fenced(epoch)
            case ClaimEpoch(epoch):
                return bool(await conn.execute(_CLAIM_EPOCH, epoch) == "UPDATE 1")
            case Ping():
                await conn.execute(_PING)
            case _:
                raise TypeError(f"unknown write op {op!r}")
        return None


class PostgresStore(AdminQueries, ChatReads, Reports, WebhookQueries, StoreEdge):
    """The `Store` protocol on PostgreSQL (see the module docstring for limits)."""

    def __init__(
        self,
        url: str,
        synchronous: str = "NORMAL",  # accepted for parity with SqliteStore; always durable
        *,
        busy_timeout: float = 5.0,
        max_batch: int = 512,
        pool_size: int = 5,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.dsn, self.sa_url = urls(url)
        self._clock = clock
        self._pool_size = pool_size
        self.backend = PgBackend(self.dsn, lock_timeout=busy_timeout)
        # ~2 minutes of retries (2 s apart at most) for lifecycle records: a restart passes
        super().__init__(
            AsyncWriter(self.backend, max_batch=max_batch, max_attempts=70), DRIVER_ERRORS
        )
        self._engine: AsyncEngine | None = None

    async def start(self) -> None:
        await self.guarded(self.writer.start())
        self._engine = create_async_engine(
            self.sa_url,
            pool_pre_ping=True,
            hide_parameters=True,  # errors must not carry message bodies into logs
            pool_size=self._pool_size,
            max_overflow=self._pool_size,
            pool_timeout=10,
            connect_args={"timeout": 5, "command_timeout": 30},
        )

    async def close(self) -> None:
        await self.writer.stop()
        if self._engine is not None:
            await self._engine.dispose()
            self._engine = None

    # -- cold path ------------------------------------------------------------
    async def _run(
        self, fn: Callable[Concatenate[Connection, P], T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        engine = self._engine
        if engine is None:
            raise StoreError("store is not started")
        with self.translated():
            async with engine.connect() as conn:
                return await conn.run_sync(fn, *args, **kwargs)

    async def create_account(self, account: Account) -> Account:
        return await self._run(queries.create_account, account, self._clock())

    async def get_account(self, account_id: str) -> Account | None:
        return await self._run(queries.get_account, account_id)

    async def get_account_by_username(
        self, username: str, kind: AccountKind = AccountKind.LOCAL
    ) -> Account | None:
        return await self._run(queries.get_account_by_username, username, kind)

    async def get_external_account(self, external_id: str) -> Account | None:
        return await self._run(queries.get_external_account, external_id)

    async def upsert_account(self, account: Account) -> None:
        await self._run(queries.upsert_account, account, self._clock())
