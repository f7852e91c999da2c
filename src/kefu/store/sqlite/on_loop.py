"""The SQLite write path run on the event loop itself (synchronous=NORMAL).

`OnTheLoop` is the `AsyncBatchBackend` that `AsyncWriter` drives for a
`SqliteStore` with synchronous=NORMAL: it runs each batch through
`SqliteBackend` on the loop, waits for the write lock without blocking the
loop, and can be `held` for a moment by the checkpointer
(`checkpointer.Checkpointer`) while it needs the WAL to stand still.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections.abc import Iterator, Sequence
from typing import Any

from kefu.store.sqlite.backend import SqliteBackend
from kefu.store.writer import WriteOp

HOLD_TIMEOUT = 0.02  # seconds a batch waits, at most, for a held pass to end


class OnTheLoop:
    """The SQLite write path run on the event loop itself (synchronous=NORMAL).

    Why not a thread: the writer thread and the event loop fight over the GIL.
    sqlite3 releases it around every statement, the loop takes it, and the
    writer waits up to a switch interval (`sys.getswitchinterval()`, 5 ms) to
    get it back, once per row, so every ack waits for that convoy. In WAL mode
    with synchronous=NORMAL a commit does not fsync, so a batch costs the loop
    only the CPU of its statements. With synchronous=FULL each commit waits
    for the disk, which a thread does better.

    The connection never checkpoints (`wal_autocheckpoint=0`: a checkpoint
    fsyncs); the store's `Checkpointer` does, from its own thread, and `held`
    lets it keep batches from starting for the moment it needs the WAL to
    stand still.
    """

    def __init__(self, backend: SqliteBackend) -> None:
        self.backend = backend
        self.pause = 0.0  # seconds every batch waits before it starts (see `Checkpointer`)
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
