"""The SQL of the SQLite write path: one stdlib `sqlite3` connection, run by a writer.

`SqliteBackend` is the `BatchBackend` of both SQLite writers: the writer
thread (synchronous=FULL) calls it directly, the on-loop runner
(`on_loop.OnTheLoop`, synchronous=NORMAL) from the event loop. Its connection
is in WAL mode with the store's `synchronous`, `busy_timeout`, foreign keys on
and a page cache of `WRITER_CACHE_KIB`. Each batch is one `BEGIN IMMEDIATE ...
COMMIT`, in which every run of consecutive messages is one `executemany` of
`INSERT ... ON CONFLICT (sender_id, op_id) DO NOTHING`; the messages are looked
up one by one only when that skipped some (a resent op_id). A `CheckEpoch`
is an `UPDATE` of the one `leader_epoch` row, which BEGIN IMMEDIATE has
already serialized against every other writer of the file.

Limits: the connection belongs to whoever drives the writer (one thread, or
the loop); `read_account` uses it too, so only from there.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from sqlalchemy.engine import make_url

from kefu.core.commands import CloseConversation, Dequeue, Enqueue, OpenConversation
from kefu.core.model import AccountKind, Role
from kefu.store.base import Account, Appended, Fenced, NewMessage, StoreError
from kefu.store.outbox import Outbox, Subscriptions
from kefu.store.tables import from_us, from_us_or_none, metadata, to_us
from kefu.store.writer import (
    CheckEpoch,
    ClaimEpoch,
    Ping,
    SetRate,
    UpsertAccount,
    WriteOp,
    message_runs,
)

# The writer's page cache (SQLite's default is 2 MiB). It holds every page the
# largest batch dirties, so none is written to the WAL before the commit and
# again in it, and keeps the index pages that inserts touch.
WRITER_CACHE_KIB = 16384

_INSERT_MESSAGE = (
    "INSERT INTO messages (id, conversation_id, type, sender_id, receiver_id, payload, op_id,"
    " created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (sender_id, op_id) DO NOTHING"
)
_STORED_MESSAGE = (
    "SELECT id, type, payload, created_at FROM messages WHERE sender_id = ? AND op_id = ?"
)
_ENQUEUE = (
    "INSERT INTO queue_entries (user_id, queued_at, seq) VALUES (?, ?,"
    " (SELECT COALESCE(MAX(seq), 0) + 1 FROM queue_entries))"
    " ON CONFLICT (user_id) DO UPDATE SET queued_at = excluded.queued_at, seq = excluded.seq"
)
_DEQUEUE = "DELETE FROM queue_entries WHERE user_id = ?"
# a departure from the queue (`Dequeue.left_at`), recorded from the entry it deletes
_QUEUE_EXIT = (
    "INSERT INTO queue_exits (user_id, queued_at, left_at, served)"
    " SELECT user_id, queued_at, ?, ? FROM queue_entries WHERE user_id = ?"
)
_UPSERT_ACCOUNT = (
    "INSERT INTO accounts (id, username, role, nickname, avatar, password_hash, created_at,"
    " kind, external_id) VALUES (?, ?, ?, ?, ?, NULL, ?, 'external', ?)"
    " ON CONFLICT (external_id) DO UPDATE SET"
    " username = excluded.username, role = excluded.role, nickname = excluded.nickname,"
    " avatar = excluded.avatar"
)
_READ_ACCOUNT = (
    "SELECT id, username, role, nickname, avatar, password_hash, kind, external_id,"
    " created_at, disabled_at, tokens_after, erased_at FROM accounts WHERE "
)
_ACCOUNT_BY = {
    "id": "id = ?",
    "username": "username = ? AND kind = 'local'",
    "external": "external_id = ? AND kind = 'external'",
}
_OPEN = (
    "INSERT INTO conversations (id, user_id, waiter_id, opened_at, queued_at)"
    " VALUES (?, ?, ?, ?, ?)"
    " ON CONFLICT (id) DO NOTHING"
)
_CLOSE = (
    "UPDATE conversations SET closed_at = ?, close_reason = ?, rate = COALESCE(rate, ?)"
    " WHERE id = ? AND closed_at IS NULL"
)
_RATE = "UPDATE conversations SET rate = ? WHERE id = ? AND rate IS NULL"
_INSERT_OUTBOX = (
    "INSERT INTO webhook_outbox (event, subject, conversation_id, ref, created_at, data)"
    " VALUES (?, ?, ?, ?, ?, ?)"
)
_CHECK_EPOCH = "UPDATE leader_epoch SET epoch = epoch WHERE id = 1 AND epoch = ?"
_CLAIM_EPOCH = "UPDATE leader_epoch SET epoch = ? WHERE id = 1 AND epoch < ?"
# SQLite does not rewrite a row whose bytes are unchanged: a ping changes it and back
_PING = (
    "UPDATE leader_epoch SET epoch = epoch + 1 WHERE id = 1",
    "UPDATE leader_epoch SET epoch = epoch - 1 WHERE id = 1",
)

_ITEM_ERRORS = (
    sqlite3.IntegrityError,
    sqlite3.DataError,
    sqlite3.InterfaceError,
    TypeError,
    ValueError,
    AttributeError,
)


def sqlite_path(url: str) -> str:
    """The file path of a `sqlite:///relative.db` or `sqlite:////abs.db` URL."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        raise ValueError(f"not a SQLite URL: {url!r}")
    db = parsed.database
    if not db or db == ":memory:" or parsed.query.get("mode") == "memory":
        raise ValueError("kefu needs a SQLite database file, not an in-memory database")
    return db


def _row(m: NewMessage) -> tuple[Any, ...]:
    """The parameters of `_INSERT_MESSAGE` for one message."""
    payload = m.payload if isinstance(m.payload, str) else m.payload.decode()
    return (
        m.id,
        m.conversation_id,
        m.type,
        m.sender_id,
        m.receiver_id,
        payload,
        m.op_id,
        to_us(m.created),
    )


def _existing(stored: Any, type_: str, payload: str) -> Appended:
    """The answer for a message whose (sender_id, op_id) already holds the `stored` row."""
    same = stored[1] == type_ and _same_payload(stored[2], payload)
    return Appended(id=stored[0], created=from_us(stored[3]), duplicate=same, conflict=not same)


def _same_payload(stored: str, new: str) -> bool:
    if stored == new:
        return True
    try:
        return bool(json.loads(stored) == json.loads(new))
    except ValueError:
        return False


class SqliteBackend:
    """The SQL of the write path, run by the writer (see `writer.BatchBackend`)."""

    def __init__(self, path: str, synchronous: str, busy_timeout: float) -> None:
        self.path = path
        self.synchronous = synchronous
        self.busy_timeout = busy_timeout
        self._con: sqlite3.Connection | None = None
        self._cur: sqlite3.Cursor | None = None
        self.outbox = Outbox(Subscriptions())  # each batch's webhook events (`store/outbox.py`)
        self._apply: dict[type, Callable[[Any], Any]] = {
            NewMessage: self._message,
            Enqueue: self._enqueue,
            Dequeue: self._dequeue,
            OpenConversation: self._open,
            CloseConversation: self._close,
            SetRate: self._rate,
            UpsertAccount: self._upsert,
            ClaimEpoch: self._claim_epoch,
            CheckEpoch: self._check_epoch,
            Ping: self._ping,
        }

    def open(self) -> None:
        uri = Path(self.path).resolve().as_uri() + "?mode=rw"  # never create an empty file
        try:
            con = sqlite3.connect(uri, uri=True, isolation_level=None, timeout=self.busy_timeout)
        except sqlite3.OperationalError as exc:
            raise StoreError(f"cannot open {self.path}: {exc}; run `kefu db upgrade`") from exc
        try:
            con.execute("PRAGMA journal_mode=WAL")
            con.execute(f"PRAGMA synchronous={self.synchronous}")
            con.execute(f"PRAGMA busy_timeout={int(self.busy_timeout * 1000)}")
            con.execute("PRAGMA foreign_keys=ON")
            con.execute(f"PRAGMA cache_size=-{WRITER_CACHE_KIB}")
            names = {row[0] for row in con.execute("SELECT name FROM sqlite_master")}
            missing = set(metadata.tables) - names
            if missing:
                raise StoreError(
                    f"{self.path} is not migrated (missing {sorted(missing)}); "
                    "run `kefu db upgrade`"
                )
        except BaseException:
            con.close()
            raise
        self._con = con
        self._cur = con.cursor()

    def close(self) -> None:
        if self._con is not None:
            self._con.close()
            self._con = self._cur = None

    @property
    def connected(self) -> bool:
        return self._cur is not None

    def set_busy_timeout(self, seconds: float) -> None:
        self.pragma(f"busy_timeout={int(seconds * 1000)}")

    def pragma(self, setting: str) -> None:
        assert self._con is not None
        self._con.execute(f"PRAGMA {setting}")

    def is_item_error(self, exc: BaseException) -> bool:
        return isinstance(exc, _ITEM_ERRORS)

    def execute(self, ops: Sequence[WriteOp], isolate: bool) -> list[Any]:
        cur = self._cur
        if cur is None:
            raise StoreError("writer connection is closed")
        cur.execute("BEGIN IMMEDIATE")
        try:
            results = [self._isolated(cur, op) for op in ops] if isolate else self._run(ops)
            outbox = self.outbox.rows(ops, results)
            if outbox:  # the batch's webhook events: one statement, in its transaction
                cur.executemany(_INSERT_OUTBOX, outbox)
            cur.execute("COMMIT")
        except BaseException:
            self._rollback()
            raise
        return results

    def _isolated(self, cur: sqlite3.Cursor, op: WriteOp) -> Any:
        cur.execute("SAVEPOINT item")
        try:
            result = self._apply[type(op)](op)
        except Exception as exc:
            if not self.is_item_error(exc):
                raise
            cur.execute("ROLLBACK TO item")
            cur.execute("RELEASE item")
            return exc
        cur.execute("RELEASE item")
        return result

    def _rollback(self) -> None:
        con = self._con
        if con is not None and con.in_transaction:
            # the connection may have rolled back by itself (e.g. SQLITE_FULL)
            with contextlib.suppress(sqlite3.Error):
                con.execute("ROLLBACK")

    def _run(self, ops: Sequence[WriteOp]) -> list[Any]:
        """Every op in order; each run of consecutive messages is one `executemany`."""
        results: list[Any] = []
        apply = self._apply
        for item in message_runs(ops):
            if isinstance(item, list):
                results += self._messages(item)
            else:
                results.append(apply[type(item)](item))
        return results

    def _messages(self, msgs: Sequence[NewMessage]) -> list[Appended]:
        """Insert a run of messages with one `executemany`, in order.

        If every row was inserted (the usual case) that is the answer. If not,
        some (sender_id, op_id) was taken, by an earlier batch or an earlier
        message of the run, and each message is looked up as `_message` does:
        the row stored under its key is its own if it has its id. If that
        accounts for more rows than were inserted, a message id was sent
        twice; an `IntegrityError` then makes the writer run the batch again
        op by op, which tells the two apart.
        """
        cur = self._cur
        assert cur is not None
        rows = [_row(m) for m in msgs]
        cur.executemany(_INSERT_MESSAGE, rows)
        inserted = cur.rowcount
        if inserted == len(rows):
            return [Appended(id=m.id, created=m.created) for m in msgs]
        out: list[Appended] = []
        own = 0
        for m, row in zip(msgs, rows, strict=True):
            if m.op_id is None:  # NULL never conflicts: it was inserted
                stored = None
            else:
                stored = cur.execute(_STORED_MESSAGE, (m.sender_id, m.op_id)).fetchone()
                if stored is None:  # cannot happen: DO NOTHING fires only on (sender_id, op_id)
                    raise sqlite3.IntegrityError(f"message {m.id} was not stored")
            if stored is None or stored[0] == m.id:
                out.append(Appended(id=m.id, created=m.created))
                own += 1
            else:
                out.append(_existing(stored, m.type, row[5]))
        if own != inserted:
            raise sqlite3.IntegrityError("a message id was sent twice")
        return out

    def _message(self, m: NewMessage) -> Appended:
        """One message (the op-by-op path, each in its own savepoint)."""
        cur = self._cur
        assert cur is not None
        row = _row(m)
        cur.execute(_INSERT_MESSAGE, row)
        if cur.rowcount == 1:
            return Appended(id=m.id, created=m.created)
        stored = cur.execute(_STORED_MESSAGE, (m.sender_id, m.op_id)).fetchone()
        if stored is None:  # cannot happen: DO NOTHING fires only on (sender_id, op_id)
            raise sqlite3.IntegrityError(f"message {m.id} was not stored")
        return _existing(stored, m.type, row[5])

    def _enqueue(self, r: Enqueue) -> None:
        assert self._cur is not None
        self._cur.execute(_ENQUEUE, (r.user_id, to_us(r.queued_at)))

    def _dequeue(self, r: Dequeue) -> None:
        assert self._cur is not None
        if r.left_at is not None:
            self._cur.execute(_QUEUE_EXIT, (to_us(r.left_at), r.served, r.user_id))
        self._cur.execute(_DEQUEUE, (r.user_id,))

    def _open(self, r: OpenConversation) -> bool:
        """True if it opened the conversation (False: it was stored already)."""
        assert self._cur is not None
        queued = None if r.queued_at is None else to_us(r.queued_at)
        row = (r.conversation_id, r.user_id, r.waiter_id, to_us(r.opened_at), queued)
        return self._cur.execute(_OPEN, row).rowcount == 1

    def _close(self, r: CloseConversation) -> bool:
        """True if it closed the conversation (False: closed already, or unknown)."""
        assert self._cur is not None
        reason = getattr(r.reason, "value", r.reason)
        row = (to_us(r.closed_at), str(reason), r.rate, r.conversation_id)
        return self._cur.execute(_CLOSE, row).rowcount == 1

    def _rate(self, r: SetRate) -> bool:
        assert self._cur is not None
        return self._cur.execute(_RATE, (r.rate, r.conversation_id)).rowcount == 1

    def _upsert(self, r: UpsertAccount) -> bool:
        assert self._cur is not None
        a = r.account
        row = (a.id, a.username, a.role.value, a.nickname, a.avatar, to_us(r.now), a.external_id)
        try:
            self._cur.execute(_UPSERT_ACCOUNT, row)
        except sqlite3.IntegrityError:  # the id or the username belongs to another account
            return False
        return True

    def _claim_epoch(self, r: ClaimEpoch) -> bool:
        assert self._cur is not None
        return self._cur.execute(_CLAIM_EPOCH, (r.epoch, r.epoch)).rowcount == 1

    def _check_epoch(self, r: CheckEpoch) -> None:
        assert self._cur is not None
        if self._cur.execute(_CHECK_EPOCH, (r.epoch,)).rowcount != 1:
            raise Fenced(r.epoch)

    def _ping(self, _: Ping) -> None:
        assert self._cur is not None
        for statement in _PING:
            self._cur.execute(statement)

    def read_account(self, by: str, value: str) -> Account | None:
        """One account by `id`, local `username` or `external` id, on the writer's connection."""
        assert self._cur is not None
        row = self._cur.execute(_READ_ACCOUNT + _ACCOUNT_BY[by], (value,)).fetchone()
        if row is None:
            return None
        kind = AccountKind(row[6])
        role = Role(row[2])
        created, disabled, after, erased = (from_us_or_none(t) for t in row[8:])
        return Account(
            row[0],
            row[1],
            role,
            row[3],
            row[4] or "",
            row[5],
            kind,
            row[7],
            created,
            disabled,
            after,
            erased,
        )
