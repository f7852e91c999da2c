"""Group-commit writer: one FIFO, one transaction per batch, one loop wake-up per batch.

Everything written goes through one FIFO of items (`items.py`): messages with
their `done` callback, lifecycle records (`Enqueue`, `Dequeue`,
`OpenConversation`, `CloseConversation`, each optionally guarded by a leader
epoch), calls whose result is wanted (`SetRate`, `UpsertAccount`,
`ClaimEpoch`, `Ping`), and flush markers. The writer takes what is queued (at most
`max_batch` items), has the backend run the ops (`ops.py`) in **one
transaction**, and then settles the batch's items on the event loop, in
submission order. An ack sent from a message's `done` therefore means
"committed". `ThreadWriter` (`thread.py`) drives a blocking backend from a
thread of its own; `AsyncWriter` (`loop.py`) drives an asyncio backend from a
task. Both share the batch steps of `batches.py`.

Failure policy (the backend says which errors are whose fault):

* **Item errors** (a constraint or type error caused by one item): the batch is
  run again with one savepoint per item; only the bad items fail, the rest
  commit together. A message that fails gets `StoreUnavailable`; a lifecycle
  record that fails is logged and dropped (retrying it cannot help).
* **Database errors** (locked, read-only, disk full, connection lost): the
  whole batch is rolled back. Every message and call in it gets
  `StoreUnavailable` (clients retry with the same `op_id`, which is idempotent).
  Its lifecycle records are put back at the head of the FIFO, together with
  the flush markers queued after them, and retried with exponential backoff
  up to `max_attempts` runs in all; then they are logged and dropped, and
  those markers fail. Backend writes of lifecycle records must therefore be
  idempotent.
* **Fenced** (a record's leader epoch is no longer the stored one): the batch
  is rolled back; its records of that epoch are dropped (a newer leader owns
  that state), its messages and calls get `StoreUnavailable`, its flush markers
  fail with `Fenced`, and the writer's `on_fenced(epoch)` runs first. A flush
  marker in a later batch fails with `Fenced` too if a guarded record queued
  after the flush before it was fenced (`items.Fences`).
* Any other flush marker in a batch that failed gets `StoreUnavailable`.

The batching here is independent of the database: a backend only has to run a
list of operations in one transaction (`BatchBackend` / `AsyncBatchBackend`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, Protocol

from kefu.store.base import AppendDone, LifecycleWrite, NewMessage
from kefu.store.writer.items import CallOp, WriterStats
from kefu.store.writer.loop import AsyncWriter
from kefu.store.writer.ops import (
    AsyncBatchBackend,
    BatchBackend,
    CheckEpoch,
    ClaimEpoch,
    Ping,
    SetRate,
    UpsertAccount,
    WriteOp,
    message_runs,
)
from kefu.store.writer.thread import ThreadWriter


class Writer(Protocol):
    """A group-commit writer, as a store uses it (`ThreadWriter` and `AsyncWriter` are ones)."""

    stats: WriterStats
    on_fenced: Callable[[int], None] | None

    async def start(self) -> None: ...
    async def stop(self) -> None: ...
    def append(self, message: NewMessage, done: AppendDone) -> None: ...
    def write(self, record: LifecycleWrite, epoch: int | None = None) -> None: ...
    def call(self, op: CallOp) -> asyncio.Future[Any]: ...
    async def flush(self) -> None: ...


__all__ = [
    "AsyncBatchBackend",
    "AsyncWriter",
    "BatchBackend",
    "CheckEpoch",
    "ClaimEpoch",
    "Ping",
    "SetRate",
    "ThreadWriter",
    "UpsertAccount",
    "WriteOp",
    "Writer",
    "WriterStats",
    "message_runs",
]
