"""The steps of one batch that both writers share, around the backend's transaction.

`ThreadWriter` and `AsyncWriter` each own a `Batches`: it turns the items taken
from the FIFO into the backend's ops (`begin`), and the backend's answer into
callbacks (`committed`, `failed`). The writers differ only in how they wait
for items and how they call the backend (a thread, or a task on the loop).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from kefu.store.base import LifecycleWrite
from kefu.store.writer.items import (
    Call,
    Callback,
    Fences,
    Item,
    Marker,
    Record,
    WriterStats,
    settle_failure,
    settle_success,
)
from kefu.store.writer.ops import CheckEpoch, WriteOp

log = logging.getLogger("kefu.store.writer")


class Batches:
    """The writer's batch steps and their counters (`stats`).

    `record` and `marker` make those items (on the loop, where they are
    queued); the other methods run wherever the writer runs its batches.
    """

    def __init__(self, max_attempts: int) -> None:
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        self.stats = WriterStats()
        self.max_attempts = max_attempts
        self.on_fenced: Callable[[int], None] | None = None  # see `Store.on_fenced`
        self.stopping = False  # a stop marker was taken: the writer ends after this batch
        self.fences = Fences()
        self._seq = 0  # records and markers made so far
        self._last_marker = 0  # the sequence number of the latest marker
        self._began = 0.0  # when the batch being run was handed to the backend (perf_counter)

    def record(self, op: LifecycleWrite, epoch: int | None) -> Record:
        self._seq += 1
        return Record(op, epoch, self._seq)

    def marker(self, future: asyncio.Future[Any], stop: bool) -> Marker:
        self._seq += 1
        marker = Marker(future, stop, self._seq, self._last_marker)
        self._last_marker = self._seq
        return marker

    def begin(self, batch: Sequence[Item]) -> tuple[list[WriteOp], bool]:
        """The batch's ops, counted; and whether they include epoch checks.

        A `CheckEpoch` goes before the first record guarded by each epoch, so a
        batch checks every epoch once, in the same transaction, and after any
        `ClaimEpoch` queued before that record.
        """
        ops: list[WriteOp] = []
        checked: set[int] | None = None
        for item in batch:
            if isinstance(item, tuple):
                ops.append(item[0])
            elif isinstance(item, Record):
                epoch = item.epoch
                if epoch is not None and (checked is None or epoch not in checked):
                    if checked is None:
                        checked = set()
                    checked.add(epoch)
                    ops.append(CheckEpoch(epoch))
                ops.append(item.op)
            elif isinstance(item, Call):
                ops.append(item.op)
            elif isinstance(item, Marker) and item.stop:
                self.stopping = True
        if ops:
            stats = self.stats
            stats.batches += 1
            stats.ops += len(ops)
            stats.largest = max(stats.largest, len(ops))
            stats.batch_ops.observe(len(ops))
            self._began = time.perf_counter()
        return ops, checked is not None

    def committed(
        self, batch: Sequence[Item], ops: Sequence[WriteOp], results: list[Any], checks: bool
    ) -> list[Callback]:
        """The batch committed (or had no ops: only markers): the callbacks that tell its items."""
        if ops:
            self.stats.commits += 1
            self.stats.commit_seconds.observe(time.perf_counter() - self._began)
        if checks:  # the checks' results belong to no item
            results = [r for op, r in zip(ops, results, strict=True) if type(op) is not CheckEpoch]
        return settle_success(batch, results, self.fences)

    def failed(self, batch: Sequence[Item], exc: Exception) -> tuple[list[Callback], list[Item]]:
        """The batch was rolled back as a whole: callbacks, and the items to run again."""
        self.stats.failures += 1
        log.warning("store batch of %d items rolled back: %r", len(batch), exc)
        calls, carry = settle_failure(
            batch, exc, self.max_attempts, self.stats, self.fences, self.on_fenced
        )
        if any(isinstance(i, Marker) and i.stop for i in carry):
            self.stopping = False  # the stop marker waits for the retried records
        return calls, carry

    def broken(self, batch: Sequence[Item], exc: Exception) -> list[Callback]:
        """The writer itself failed on the batch (a bug): every item fails, nothing is retried."""
        log.error("store writer failed on a batch", exc_info=exc)
        calls, _ = settle_failure(batch, exc, 0, self.stats, self.fences)
        return calls
