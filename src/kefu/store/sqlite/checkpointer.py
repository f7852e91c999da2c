"""WAL checkpoints for the on-loop SQLite writer: copy the WAL, and start it over under load.

The `Checkpoints` of a `SqliteStore` with synchronous=NORMAL (see
`checkpoints.py`); how and why a round goes as it does, and its limits, are in
the `Checkpointer` docstring.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

from kefu.store.sqlite import on_loop
from kefu.store.sqlite.checkpoints import CheckpointStats
from kefu.store.sqlite.on_loop import OnTheLoop

log = logging.getLogger("kefu.store.sqlite")
T = TypeVar("T")

# WAL checkpoints of the on-loop writer (see `Checkpointer`).
CHECKPOINT_INTERVAL = 0.5  # most seconds between checkpoint rounds
CHECKPOINT_MIN_INTERVAL = 0.01  # least seconds between rounds (the WAL fills fast)
IDLE_POLL = 0.1  # seconds between looks at a writer that wrote nothing since the last one
WAL_RESTART_BYTES = 32 << 20  # a round starts the WAL over once it holds this much
CHECKPOINT_BYTES = 8 << 20  # or sooner: once about this much WAL was written since the last
WAL_SIZE_LIMIT = 64 << 20  # a bigger WAL file is cut back (by SHRINK_STEP) at each restart
SHRINK_STEP = 16 << 20  # bytes cut off a WAL file at most per restart (freeing costs time)
CATCH_UP_BYTES = 2 << 20  # at most this much WAL is left to copy while the writer is held
CATCH_UP_PASSES = 16  # unheld passes, at most, to get the rest down to CATCH_UP_BYTES
CATCH_UP_PAUSE = 0.002  # seconds each batch waits while passes fail to gain on the writer
LAGGING = 2  # beyond this many times WAL_SIZE_LIMIT, that wait doubles at every pass that fails


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


class Checkpointer:
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
       If a pass copies more than half what the one before did, the passes
       are not gaining on the writer, and each batch then waits
       `CATCH_UP_PAUSE` before it starts until the round ends; if the WAL
       meanwhile holds over `LAGGING` times `WAL_SIZE_LIMIT`, the wait
       doubles at every such pass, up to `HOLD_TIMEOUT` (otherwise a writer
       that commits large batches back to back outruns the passes for good,
       and its WAL, and the cost of every commit into it, grows for as long
       as it writes).
    3. Once a pass copied at most `CATCH_UP_BYTES`, the writer is held
       (`OnTheLoop.held`) for one last pass (`_catch_up`), which only has to
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

    Limits: a hold lasts a short copy and up to three fsyncs, so it is as
    long as the disk takes to sync, longer when fsyncs queue behind other
    writes (a batch waits at most `HOLD_TIMEOUT`; a hold that lasts longer
    does not start the WAL over). Cutting a file back adds the time to free
    `SHRINK_STEP` of it. While passes fail to gain on the writer, every batch
    is `CATCH_UP_PAUSE` later, or up to `HOLD_TIMEOUT` once the WAL is far
    over its limit: an overloaded store's acks slow down instead of its WAL
    growing. The WAL exceeds `WAL_RESTART_BYTES` by what is
    written during the passes of a round, which is several times that when
    the writer commits as fast as it can. A reader that keeps a snapshot
    open, another connection writing, or passes that do not get down to
    `CATCH_UP_BYTES` in `CATCH_UP_PASSES`, keep the WAL from starting over
    while they last. The writer's page cache is emptied whenever the WAL
    starts over (another connection committed), so the next batches read
    their pages again. The first commit into an empty WAL (when the store
    starts on one) still syncs the new header on the loop.
    """

    def __init__(self, path: str, writer: OnTheLoop, *, busy_timeout: float = 5.0) -> None:
        self.path = path
        self.writer = writer
        self.stats = CheckpointStats()
        self.busy_timeout = busy_timeout  # for the last checkpoint, at `stop`
        self._task: asyncio.Task[None] | None = None
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

    def _truncate(self) -> None:
        """Copy the whole WAL into the database and empty it, to leave a small WAL behind."""
        with contextlib.suppress(sqlite3.Error):
            con = sqlite3.connect(self.path, timeout=self.busy_timeout)
            try:
                con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            finally:
                con.close()

    # -- on the loop --------------------------------------------------------------------
    def start(self) -> None:
        """Run rounds in a task of their own until `stop`."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(
                self.run(), name="kefu-sqlite-checkpoints"
            )

    async def stop(self) -> None:
        """End the rounds and, if the database is still there, empty the WAL (it fsyncs)."""
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass
        except Exception as exc:  # the store closes all the same
            log.warning("WAL checkpoints ended by %s", type(exc).__name__)
        if os.path.exists(self.path):
            await asyncio.to_thread(self._truncate)

    async def run(self) -> None:
        """Rounds until cancelled; an error skips a round (the next one tries again)."""
        loop = asyncio.get_running_loop()
        # its own thread: a held pass must not queue behind reads in the default executor
        self._executor = executor = ThreadPoolExecutor(1, "kefu-sqlite-checkpoints")
        try:
            delay = 0.0  # connect at once; the first round after CHECKPOINT_INTERVAL
            while True:
                await self._wait(delay)
                try:
                    if self._con is None:  # not yet, or the file could not be read then
                        delay = CHECKPOINT_INTERVAL
                        await self._in_thread(self._connect)
                        continue
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
        little left to copy. It looks every `CHECKPOINT_MIN_INTERVAL` while the
        writer writes and every `IDLE_POLL` while it does not, so an idle
        server's loop is not woken a hundred times a second."""
        end = time.monotonic() + delay
        enough = CHECKPOINT_BYTES / self._frame_bytes
        step, seen = CHECKPOINT_MIN_INTERVAL, self.writer.rows
        while (left := end - time.monotonic()) > 0:
            await asyncio.sleep(min(left, step))
            rows = self.writer.rows
            step = CHECKPOINT_MIN_INTERVAL if rows != seen else IDLE_POLL  # idle: look less often
            seen = rows
            written = (rows - self._rows) * self._frames_per_row
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
                        self.writer.pause = self._lagging_pause(last.frames)
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

    def _lagging_pause(self, frames: int) -> float:
        """The pause before each batch once a pass failed to gain on the writer.

        `CATCH_UP_PAUSE`; but while the WAL holds more than `LAGGING` times
        `WAL_SIZE_LIMIT` (the passes fall behind, not just converge slowly) it doubles
        at every such pass, up to `HOLD_TIMEOUT`, until the round ends.
        """
        pause = self.writer.pause
        if not pause or frames * self._frame_bytes <= LAGGING * WAL_SIZE_LIMIT:
            return CATCH_UP_PAUSE
        return min(2 * pause, on_loop.HOLD_TIMEOUT)

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
