"""What every store does at its edge: the write path in front of its writer, and its errors.

`StoreEdge` is the base of `SqliteStore` and `PostgresStore`. It owns the
writer's side of the `Store` protocol (append, write, flush, rate,
claim_epoch, ping, on_fenced) and the rule that **no driver error leaves a store**:
whatever the database driver, SQLAlchemy or the operating system raises
(`driver_errors`, `OSError`, `TimeoutError`) reaches the caller as
`StoreUnavailable`, with the original as its `__cause__`; the store's own
errors (`AccountExists`, `Fenced`, ...) pass unchanged. The writer already
settles its items that way; the subclasses run their cold reads and account
writes through `guarded` / `translated`.

Limits: programming errors (`TypeError`, `ValueError` for a bad argument) are
not translated, so a bug is not reported as an outage.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from kefu.store.base import (
    AppendDone,
    LifecycleWrite,
    NewMessage,
    StoreError,
    StoreUnavailable,
)
from kefu.store.writer import ClaimEpoch, Ping, SetRate, Writer

T = TypeVar("T")


class StoreEdge:
    """The write path and the error edge shared by the stores (see the module docstring)."""

    def __init__(self, writer: Writer, driver_errors: tuple[type[BaseException], ...]) -> None:
        self.writer = writer
        self._driver_errors: tuple[type[BaseException], ...] = (
            *driver_errors,
            OSError,
            TimeoutError,
        )

    # -- errors -----------------------------------------------------------------------
    def translate(self, exc: BaseException) -> BaseException:
        """The error a caller sees for `exc`: `StoreUnavailable` for a driver error."""
        if isinstance(exc, StoreError) or not isinstance(exc, self._driver_errors):
            return exc
        err = StoreUnavailable(f"{type(exc).__name__}: {exc}")
        err.__cause__ = exc
        return err

    @contextmanager
    def translated(self) -> Iterator[None]:
        """Driver errors raised inside the block leave it as `StoreUnavailable`."""
        try:
            yield
        except Exception as exc:
            err = self.translate(exc)
            if err is exc:
                raise
            raise err from exc

    async def guarded(self, work: Awaitable[T]) -> T:
        """Await `work`; a driver error it raises becomes `StoreUnavailable`."""
        with self.translated():
            return await work

    # -- write path -------------------------------------------------------------------
    @property
    def on_fenced(self) -> Callable[[int], None] | None:
        """Called on the loop with the epoch, once for every batch a newer epoch fenced."""
        return self.writer.on_fenced

    @on_fenced.setter
    def on_fenced(self, callback: Callable[[int], None] | None) -> None:
        self.writer.on_fenced = callback

    def append(self, message: NewMessage, done: AppendDone) -> None:
        self.writer.append(message, done)

    def write(self, record: LifecycleWrite, epoch: int | None = None) -> None:
        self.writer.write(record, epoch)

    async def flush(self) -> None:
        await self.writer.flush()

    async def rate(self, conversation_id: str, rate: int) -> bool:
        return bool(await self.writer.call(SetRate(conversation_id, rate)))

    async def claim_epoch(self, epoch: int) -> bool:
        """Store `epoch` as the leader epoch if it is greater than the stored one."""
        return bool(await self.writer.call(ClaimEpoch(epoch)))

    async def ping(self) -> None:
        """A trivial write through the writer's FIFO, committed (the readiness probe)."""
        await self.writer.call(Ping())
