"""SQLite store: one writer connection for the write path, pooled connections for reads.

* The **writer** is a stdlib `sqlite3` connection: WAL, `synchronous` NORMAL (a
  commit survives a process crash, the last ones may be lost on power loss) or
  FULL (durable), `busy_timeout`, foreign keys on, a page cache of
  `WRITER_CACHE_KIB`. With NORMAL it runs on the event loop (`_OnTheLoop`,
  driven by `aiowriter.AsyncWriter`; WAL checkpoints run in a thread), with
  FULL on the group-commit thread (`writer.ThreadWriter`). Each batch is one
  `BEGIN IMMEDIATE ... COMMIT`, in which every run of consecutive messages is
  one `executemany` of `INSERT ... ON CONFLICT (sender_id, op_id) DO NOTHING`;
  the messages are looked up one by one only when that skipped some (a
  resent op_id).
* **Reads** and account writes run the portable SQLAlchemy Core functions of
  `queries.py` on a pooled sync engine in `asyncio.to_thread`; in WAL mode they
  never block the writer and see only committed data. Reads do not wait for
  queued writes: `await store.flush()` first to read your own writes.
* `rate` goes through the writer FIFO, so it is ordered after the lifecycle
  records queued before it.
* **WAL checkpoints** with NORMAL: the writer on the loop never checkpoints (a
  checkpoint fsyncs). `_Checkpointer` copies the WAL into the database with
  PASSIVE checkpoints from a thread of its own, and once the WAL holds
  `WAL_RESTART_BYTES` it catches up and holds the writer for the last few
  frames (a millisecond or two; a batch waits at most `HOLD_TIMEOUT`) so that
  the WAL starts over, instead of growing for as long as writes go on. With
  FULL the writer thread runs SQLite's automatic checkpoints after its
  commits, which catch up by themselves.

Limits: one process should own a database file (the writer is the only
message writer; a second process would contend for the write lock through
`busy_timeout`). `:memory:` databases are refused (the writer and the readers
need to share the file). Foreign keys are enforced (as PostgreSQL will), so
conversations and queue entries need their accounts, and messages their
conversation. A read that keeps one snapshot open keeps the WAL from starting
over while it lasts, and a writer committing as fast as it can fills the WAL to
several times `WAL_RESTART_BYTES` between restarts (see `_Checkpointer`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import URL, make_url

from kefu.core.commands import CloseConversation, Dequeue, Enqueue, OpenConversation
from kefu.store import queries
from kefu.store.aiowriter import AsyncWriter
from kefu.store.base import (
    Account,
    AccountExists,
    AppendDone,
    Appended,
    Conversation,
    HistoryEntry,
    LifecycleWrite,
    NewMessage,
    OpenState,
    SessionEntry,
    StoredMessage,
    StoreError,
)
from kefu.store.tables import from_us, metadata, to_us
from kefu.store.writer import SetRate, ThreadWriter, UpsertAccount, WriteOp

# WAL checkpoints of the on-loop writer (see `_Checkpointer`).
CHECKPOINT_INTERVAL = 0.5  # most seconds between checkpoint rounds
CHECKPOINT_MIN_INTERVAL = 0.01  # least seconds between rounds (the WAL fills fast)
WAL_RESTART_BYTES = 32 << 20  # a round starts the WAL over once it holds this much
CHECKPOINT_BYTES = 8 << 20  # or sooner: once about this much WAL was written since the last
WAL_SIZE_LIMIT = 64 << 20  # a bigger WAL file is cut back (by SHRINK_STEP) at each restart
SHRINK_STEP = 16 << 20  # bytes cut off a WAL file at most per restart (freeing costs time)
CATCH_UP_BYTES = 2 << 20  # at most this much WAL is left to copy while the writer is held
CATCH_UP_PASSES = 16  # unheld passes, at most, to get the rest down to CATCH_UP_BYTES
HOLD_TIMEOUT = 0.02  # seconds a batch waits, at most, for a held pass to end
CATCH_UP_PAUSE = 0.002  # seconds each batch waits while passes fail to gain on the writer
# The writer's page cache (SQLite's default is 2 MiB). It holds every page the
# largest batch dirties, so none is written to the WAL before the commit and
# again in it, and keeps the index pages that inserts touch.
WRITER_CACHE_KIB = 16384
log = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")

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
_UPSERT_ACCOUNT = (
    "INSERT INTO accounts (id, username, role, nickname, avatar, password_hash, created_at)"
    " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET"
    " username = excluded.username, role = excluded.role, nickname = excluded.nickname,"
    " avatar = excluded.avatar,"
    " password_hash = COALESCE(excluded.password_hash, accounts.password_hash)"
)
_READ_ACCOUNT = "SELECT id, username, role, nickname, avatar, password_hash FROM accounts WHERE "
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
        self._apply: dict[type, Callable[[Any], Any]] = {
            NewMessage: self._message,
            Enqueue: self._enqueue,
            Dequeue: self._dequeue,
            OpenConversation: self._open,
            CloseConversation: self._close,
            SetRate: self._rate,
            UpsertAccount: self._upsert,
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
        run: list[NewMessage] = []
        for op in ops:
            if isinstance(op, NewMessage):
                run.append(op)
                continue
            if run:
                results += self._messages(run)
                run = []
            results.append(apply[type(op)](op))
        if run:
            results += self._messages(run)
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
        self._cur.execute(_DEQUEUE, (r.user_id,))

    def _open(self, r: OpenConversation) -> None:
        assert self._cur is not None
        queued = None if r.queued_at is None else to_us(r.queued_at)
        row = (r.conversation_id, r.user_id, r.waiter_id, to_us(r.opened_at), queued)
        self._cur.execute(_OPEN, row)

    def _close(self, r: CloseConversation) -> None:
        assert self._cur is not None
        reason = getattr(r.reason, "value", r.reason)
        self._cur.execute(_CLOSE, (to_us(r.closed_at), str(reason), r.rate, r.conversation_id))

    def _rate(self, r: SetRate) -> bool:
        assert self._cur is not None
        return self._cur.execute(_RATE, (r.rate, r.conversation_id)).rowcount == 1

    def _upsert(self, r: UpsertAccount) -> bool:
        assert self._cur is not None
        a = r.account
        row = (a.id, a.username, a.role, a.nickname, a.avatar, a.password_hash, to_us(r.now))
        try:
            self._cur.execute(_UPSERT_ACCOUNT, row)
        except sqlite3.IntegrityError:  # the username belongs to another id
            return False
        return True

    def read_account(self, column: str, value: str) -> Account | None:
        """One account by id or username, read on the writer's own connection."""
        assert column in ("id", "username") and self._cur is not None
        row = self._cur.execute(_READ_ACCOUNT + column + " = ?", (value,)).fetchone()
        if row is None:
            return None
        return Account(row[0], row[1], row[2], row[3], row[4] or "", row[5])


class _OnTheLoop:
    """The SQLite write path run on the event loop itself (synchronous=NORMAL).

    Why not a thread: the writer thread and the event loop fight over the GIL.
    sqlite3 releases it around every statement, the loop takes it, and the
    writer waits up to a switch interval (5 ms) to get it back, once per row:
    at a few thousand messages per second that convoy adds tens of ms to every
    ack. In WAL mode with synchronous=NORMAL a commit does not fsync, so a
    batch costs the loop a few microseconds per row. With synchronous=FULL each
    commit waits for the disk, which a thread does better.

    The connection never checkpoints (`wal_autocheckpoint=0`: a checkpoint
    fsyncs); `_Checkpointer` does, from its own thread, and `held` lets it keep
    batches from starting for the moment it needs the WAL to stand still.
    """

    def __init__(self, backend: SqliteBackend) -> None:
        self.backend = backend
        self.pause = 0.0  # seconds every batch waits before it starts (see `_Checkpointer`)
        self.batches = 0  # batches started (transactions begun or tried)
        self.rows = 0  # operations in them
        self._resume = asyncio.Event()
        self._resume.set()

    async def open(self) -> None:
        self.backend.open()
        self.backend.set_busy_timeout(0)  # never block the loop: wait for the lock below
        self.backend.pragma("wal_autocheckpoint=0")  # checkpoints (fsync) run in a thread

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        """No batch starts inside this block, or for longer than `HOLD_TIMEOUT` each.

        Enter it on the loop: a batch runs on the loop from BEGIN to COMMIT
        without yielding, so none is half done when the block starts. The hold
        only keeps the WAL still; SQLite's own locks keep the data safe, so a
        batch that stops waiting after `HOLD_TIMEOUT` is correct, merely early.
        """
        self._resume.clear()
        try:
            yield
        finally:
            self._resume.set()

    async def _wait_while_held(self) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._resume.wait(), HOLD_TIMEOUT)

    async def execute(self, ops: Sequence[WriteOp], isolate: bool) -> list[Any]:
        """Run the batch; while another connection holds the write lock, wait without blocking.

        A batch first waits `pause` seconds, if set, and for a `held` block to
        end (it resumes as soon as it does; it waits for one hold at most, so
        never longer than `HOLD_TIMEOUT` in all). The write lock is taken by
        BEGIN IMMEDIATE, before any statement, so a refused attempt changed
        nothing and is simply tried again, for at most the busy timeout.
        """
        if self.pause:
            await asyncio.sleep(self.pause)
        waited = not self._resume.is_set()
        if waited:
            await self._wait_while_held()
        deadline = time.monotonic() + self.backend.busy_timeout
        delay = 0.001
        self.rows += len(ops)
        while True:
            self.batches += 1
            try:
                return self.backend.execute(ops, isolate)
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() >= deadline:
                    raise
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.05)
            if not waited and not self._resume.is_set():
                waited = True
                await self._wait_while_held()

    def is_item_error(self, exc: BaseException) -> bool:
        return self.backend.is_item_error(exc)

    async def close(self) -> None:
        self.backend.close()


@dataclass
class CheckpointStats:
    """What the checkpointer of an on-loop writer did (`SqliteStore.checkpoint_stats`)."""

    rounds: int = 0
    passes: int = 0  # PASSIVE checkpoints, held ones included
    holds: int = 0  # held passes (the writer kept from starting batches)
    restarts: int = 0  # passes that found fewer frames than the one before: it started over
    held: float = 0.0  # seconds the writer was held, in all
    longest_hold: float = 0.0  # seconds
    most_frames: int = 0  # the most WAL frames a pass saw


@dataclass(frozen=True, slots=True)
class _Pass:
    """What a PASSIVE checkpoint found."""

    frames: int  # frames in the WAL when it began (-1: another checkpoint was running)
    done: int  # frames copied into the database, in all
    copied: int  # frames this pass copied
    quiet: bool  # the writer started no batch meanwhile (so it left nothing to copy)
    due: bool  # the WAL should start over: it holds WAL_RESTART_BYTES or its file is too big

    @property
    def complete(self) -> bool:
        return self.frames >= 0 and self.done == self.frames


class _Checkpointer:
    """WAL checkpoints for the on-loop writer, on a connection and a thread of their own.

    A WAL only starts over (a writer writes from its beginning again) when a
    checkpoint has copied every frame into the database and then a write
    transaction begins with no reader still using the WAL. A PASSIVE
    checkpoint runs beside the writer and copies the frames committed when it
    began, so under steady writes it never catches up, and the WAL (and the
    cost of every commit into it) would grow without end. So each round:

    1. A PASSIVE checkpoint (`_unheld_pass`) copies the WAL, beside the writer.
    2. Once the WAL holds `WAL_RESTART_BYTES` (or its file is over
       `WAL_SIZE_LIMIT`), more passes (at most `CATCH_UP_PASSES`) each copy
       what was written during the one before. They also sync the database
       file once more than `CATCH_UP_BYTES` was copied since it was last
       synced (a checkpoint itself does so only when it copies everything).
       If a pass copies more than half what the one before did, the writer is
       not falling behind, and each batch then waits `CATCH_UP_PAUSE` before
       it starts until the round ends.
    3. Once a pass copied at most `CATCH_UP_BYTES`, the writer is held
       (`_OnTheLoop.held`) for one last pass (`_catch_up`), which only has to
       copy what was written during that pass, and then a write transaction
       on this connection rewrites `user_version` with its own value. That
       transaction starts the WAL over and syncs its new header, in this
       thread; the writer's next commit appends to the fresh WAL and syncs
       nothing. If the WAL held less than `WAL_RESTART_BYTES` (the load has
       dropped) and its file is over `WAL_SIZE_LIMIT`, that commit also cuts
       the file back by up to `SHRINK_STEP`; under a steady load the file
       keeps its size, since the next rounds would only grow it again.

    A pass during which the writer started no batch has copied all it wrote,
    and the writer's next commit would start the WAL over itself, syncing the
    new header on the loop. So after such a pass (at any WAL size) the writer
    is held at once, from the same step of the loop, and the held pass has
    nothing left to copy but the write transaction to run.

    Rounds are `CHECKPOINT_INTERVAL` apart, or sooner: once the writer has
    probably written `CHECKPOINT_BYTES` since the last pass (`_wait`), and
    `CHECKPOINT_MIN_INTERVAL` after a round that left the WAL due. These
    fsyncs are all in this thread, and every checkpoint syncs the WAL before
    copying it and the database before the WAL starts over, as
    synchronous=NORMAL does: durability is what the writer's setting gives.

    Limits: a hold lasts a short copy and up to three fsyncs: one or two
    milliseconds on a disk that keeps up, more when fsyncs queue behind other
    writes (a batch waits at most `HOLD_TIMEOUT`; a hold that lasts longer
    does not start the WAL over). Cutting a file back adds the time to free
    `SHRINK_STEP` of it. While passes fail to gain on the writer, every batch
    is `CATCH_UP_PAUSE` later. The WAL exceeds `WAL_RESTART_BYTES` by what is
    written during the passes of a round, which is several times that when
    the writer commits as fast as it can. A reader that keeps a snapshot
    open, another connection writing, or passes that do not get down to
    `CATCH_UP_BYTES` in `CATCH_UP_PASSES`, keep the WAL from starting over
    while they last. The writer's page cache is emptied whenever the WAL
    starts over (another connection committed), so the next batches read
    their pages again. The first commit into an empty WAL (when the store
    starts on one) still syncs the new header on the loop.
    """

    def __init__(self, path: str, writer: _OnTheLoop, stats: CheckpointStats) -> None:
        self.path = path
        self.writer = writer
        self.stats = stats
        self._con: sqlite3.Connection | None = None
        self._db_fd: int | None = None  # the database file, to sync it
        self._executor: ThreadPoolExecutor | None = None
        self._frame_bytes = 4096 + 24  # set from the page size by `_connect`
        self._frames = self._done = 0  # frames in the WAL and copied, at the last pass
        self._unsynced = 0  # frames copied since the database file was last synced
        self._rows = 0  # the writer's `rows` when the last pass began
        self._frames_per_row = 1.0  # WAL frames a row written costs, on average
        self._calm_until = 0.0  # `_wait` sleeps its full delay until then (after a failed hold)

    # -- in the checkpoint thread -------------------------------------------------------
    def _connect(self) -> None:
        con = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        try:
            con.execute("PRAGMA busy_timeout=0")  # never wait for the lock: skip a round
            con.execute("PRAGMA synchronous=NORMAL")  # its commits sync only a new WAL header
            con.execute("PRAGMA wal_autocheckpoint=0")
            self._frame_bytes = int(con.execute("PRAGMA page_size").fetchone()[0]) + 24
            self._db_fd = os.open(self.path, os.O_RDONLY)
        except BaseException:
            con.close()
            raise
        self._con = con

    def _close(self) -> None:
        if self._db_fd is not None:
            os.close(self._db_fd)
            self._db_fd = None
        if self._con is not None:
            self._con.close()
            self._con = None

    def _passive(self) -> tuple[int, int]:
        """One PASSIVE checkpoint: (frames in the WAL when it began, frames copied in all).

        (-1, -1) if another connection was checkpointing.
        """
        assert self._con is not None
        _busy, frames, done = self._con.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        return int(frames), int(done)

    def _wal_bytes(self) -> int:
        try:
            return os.stat(self.path + "-wal").st_size
        except FileNotFoundError:
            return 0

    def _unheld_pass(self) -> tuple[int, int, int, bool]:
        """`_passive` beside the writer: (frames, done, copied, due) as in `_Pass`.

        When the WAL is due to start over, it also syncs the database file once
        more than `CATCH_UP_BYTES` of frames were copied since the last sync, so
        the held pass has at most that much of the database to sync.
        """
        frames, done = self._passive()
        if frames < 0:
            return frames, done, 0, False
        copied = done - (self._done if frames >= self._frames else 0)  # shorter: started over
        self._unsynced += copied
        due = frames * self._frame_bytes >= WAL_RESTART_BYTES or self._wal_bytes() > WAL_SIZE_LIMIT
        if due and self._unsynced * self._frame_bytes > CATCH_UP_BYTES:
            assert self._db_fd is not None
            os.fdatasync(self._db_fd)
            self._unsynced = 0
        return frames, done, copied, due

    def _catch_up(self) -> tuple[int, int, bool]:
        """The held pass: copy the rest and, if it was all copied, start the WAL over.

        Returns the pass's (frames, done) and whether the write transaction
        ran. It starts the WAL over unless a reader holds a snapshot in the
        WAL (the next pass tells: `CheckpointStats.restarts`).
        """
        con = self._con
        assert con is not None
        frames, done = self._passive()
        if frames <= 0 or done != frames:
            return frames, done, False
        self._unsynced = 0  # a checkpoint that copies everything syncs the database
        limit = -1  # keep the file: under this load the next rounds fill it as far again
        if frames * self._frame_bytes < WAL_RESTART_BYTES:  # the load dropped
            limit = max(WAL_SIZE_LIMIT, self._wal_bytes() - SHRINK_STEP)
        con.execute(f"PRAGMA journal_size_limit={limit}")  # applied by the next commit
        try:
            con.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc):
                raise
            return frames, done, False  # another connection is writing: next round
        try:
            (version,) = con.execute("PRAGMA user_version").fetchone()
            con.execute(f"PRAGMA user_version={int(version)}")  # dirties page 1: one frame
            con.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                con.execute("ROLLBACK")
            raise
        return frames, done, True

    # -- on the loop --------------------------------------------------------------------
    async def run(self) -> None:
        """Rounds until cancelled; an error skips a round (the next one tries again)."""
        loop = asyncio.get_running_loop()
        # its own thread: a held pass must not queue behind reads in the default executor
        self._executor = executor = ThreadPoolExecutor(1, "kefu-sqlite-checkpoints")
        try:
            await self._in_thread(self._connect)
            delay = CHECKPOINT_INTERVAL
            while True:
                await self._wait(delay)
                try:
                    delay = await self._round()
                except Exception as exc:  # I/O trouble, most likely: the next round tries again
                    log.warning("WAL checkpoint failed: %s", type(exc).__name__)
                    delay = CHECKPOINT_INTERVAL
        finally:
            # runs after the call in progress, if any: cancelling does not stop a thread
            await asyncio.shield(loop.run_in_executor(executor, self._close))
            executor.shutdown(wait=False)

    async def _in_thread(self, fn: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn)

    async def _wait(self, delay: float) -> None:
        """Sleep `delay` seconds, or less: until the writer has probably written
        `CHECKPOINT_BYTES` since the last pass (the rows it wrote times the frames
        per row seen so far), so the round that starts the WAL over begins with
        little left to copy."""
        end = time.monotonic() + delay
        enough = CHECKPOINT_BYTES / self._frame_bytes
        while (left := end - time.monotonic()) > 0:
            await asyncio.sleep(min(left, CHECKPOINT_MIN_INTERVAL))
            written = (self.writer.rows - self._rows) * self._frames_per_row
            if written >= enough and time.monotonic() >= self._calm_until:
                return

    async def _round(self) -> float:
        """One round (see the class docstring); returns the seconds until the next."""
        self.stats.rounds += 1
        catch_up = CATCH_UP_BYTES // self._frame_bytes
        last = await self._pass()
        if last.frames < 0:  # another connection was checkpointing
            return CHECKPOINT_MIN_INTERVAL
        if last.due and not (last.quiet and last.complete):
            try:
                for _ in range(CATCH_UP_PASSES):
                    if last.copied <= catch_up or (last.quiet and last.complete):
                        break
                    before = last.copied
                    last = await self._pass()
                    if last.copied > before // 2:
                        self.writer.pause = CATCH_UP_PAUSE
            finally:
                self.writer.pause = 0.0
        if (last.quiet and last.complete and last.frames > 1) or (
            last.due and last.complete and last.copied <= catch_up
        ):
            # held from this step of the loop on: if the writer started no batch
            # during the pass, none starts before the WAL starts over
            if not await self._hold():  # a write or a slow pass got in the way: back off
                self._calm_until = time.monotonic() + CHECKPOINT_INTERVAL
            return CHECKPOINT_INTERVAL
        return CHECKPOINT_MIN_INTERVAL if last.due else CHECKPOINT_INTERVAL

    async def _pass(self) -> _Pass:
        """An unheld pass (`_unheld_pass`), counted."""
        batches, rows = self.writer.batches, self.writer.rows
        frames, done, copied, due = await self._in_thread(self._unheld_pass)
        if frames >= 0:
            grown = frames - self._frames if frames >= self._frames else frames
            if rows > self._rows and grown > 0:
                per_row = grown / (rows - self._rows)
                self._frames_per_row = (self._frames_per_row + per_row) / 2
            self._rows = rows
        self._count(frames, done)
        return _Pass(frames, done, copied, self.writer.batches == batches, due)

    def _count(self, frames: int, done: int) -> None:
        stats = self.stats
        stats.passes += 1
        if frames < 0:
            return
        if frames < self._frames:  # only a WAL that started over has fewer frames
            stats.restarts += 1
        self._frames, self._done = frames, done
        stats.most_frames = max(stats.most_frames, frames)

    async def _hold(self) -> bool:
        """The held pass (`_catch_up`); True if its write transaction ran."""
        stats = self.stats
        t0 = time.perf_counter()
        with self.writer.held():
            frames, done, wrote = await self._in_thread(self._catch_up)
        held = time.perf_counter() - t0
        stats.holds += 1
        stats.held += held
        stats.longest_hold = max(stats.longest_hold, held)
        self._count(frames, done)
        if wrote:
            self._rows = self.writer.rows  # the WAL started over at this row
        return wrote


class SqliteStore:
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
        self.checkpoint_stats = CheckpointStats()  # stays zero with synchronous=FULL
        self.writer: AsyncWriter | ThreadWriter
        self._checkpoints: _Checkpointer | None = None
        if self.inline:
            on_loop = _OnTheLoop(self.backend)
            self.writer = AsyncWriter(on_loop, max_batch=max_batch)
            self._checkpoints = _Checkpointer(self.path, on_loop, self.checkpoint_stats)
        else:
            self.writer = ThreadWriter(self.backend, max_batch=max_batch)
        self._engine: Engine | None = None
        self._checkpointer: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.writer.start()
        if self._checkpoints is not None:
            self._checkpointer = asyncio.get_running_loop().create_task(
                self._checkpoints.run(), name="kefu-sqlite-checkpoints"
            )
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
        checkpointer, self._checkpointer = self._checkpointer, None
        if checkpointer is not None:
            checkpointer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await checkpointer
        await self.writer.stop()
        try:
            if self.inline and os.path.exists(self.path):
                await asyncio.to_thread(self._truncate_wal)  # it fsyncs: not on the loop
        finally:
            if self._engine is not None:
                self._engine.dispose()
                self._engine = None

    def _truncate_wal(self) -> None:
        """Copy the whole WAL into the database and empty it, to leave a small WAL behind."""
        with contextlib.suppress(sqlite3.Error):
            con = sqlite3.connect(self.path, timeout=self.busy_timeout)
            try:
                con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            finally:
                con.close()

    # -- write path -----------------------------------------------------------
    def append(self, message: NewMessage, done: AppendDone) -> None:
        self.writer.append(message, done)

    def write(self, record: LifecycleWrite) -> None:
        self.writer.write(record)

    async def flush(self) -> None:
        await self.writer.flush()

    async def rate(self, conversation_id: str, rate: int) -> bool:
        return bool(await self.writer.call(SetRate(conversation_id, rate)))

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

        return await asyncio.to_thread(call)

    async def create_account(self, account: Account) -> Account:
        return await self._run(queries.create_account, account, self._clock())

    async def get_account(self, account_id: str) -> Account | None:
        if self.inline and self.backend.connected:  # an indexed lookup: no thread hop
            return self.backend.read_account("id", account_id)
        return await self._run(queries.get_account, account_id)

    async def get_account_by_username(self, username: str) -> Account | None:
        if self.inline and self.backend.connected:
            return self.backend.read_account("username", username)
        return await self._run(queries.get_account_by_username, username)

    async def upsert_account(self, account: Account) -> None:
        """Through the writer, so a burst of new accounts shares one commit."""
        if not await self.writer.call(UpsertAccount(account, self._clock())):
            raise AccountExists(f"username {account.username!r} is taken")

    async def history(
        self, user_id: str, before: str | None = None, limit: int = 100
    ) -> list[HistoryEntry]:
        return await self._run(queries.history, user_id, before, limit)

    async def sessions(self, waiter_id: str, limit: int = 100) -> list[SessionEntry]:
        return await self._run(queries.sessions, waiter_id, limit)

    async def latest_conversation(self, user_id: str) -> Conversation | None:
        return await self._run(queries.latest_conversation, user_id)

    async def messages_after(
        self, conversation_id: str, after_id: str, limit: int = 1000
    ) -> list[StoredMessage]:
        return await self._run(queries.messages_after, conversation_id, after_id, limit)

    async def load_open_state(self) -> OpenState:
        return await self._run(queries.load_open_state)
