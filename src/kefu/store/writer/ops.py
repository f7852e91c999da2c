"""What a writer hands its backend: the operations of one batch, and the backends' contracts.

A batch is a list of `WriteOp`s run in one transaction. Besides messages and
lifecycle records there are calls whose result is wanted (`SetRate`,
`UpsertAccount`, `ClaimEpoch`) and `CheckEpoch`, which the writer puts before
the first record of a batch that is guarded by that epoch (see `Batches`).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeAlias

from kefu.store.base import Account, LifecycleWrite, NewMessage


@dataclass(frozen=True, slots=True)
class SetRate:
    """Rate a conversation that has no rating yet; the backend returns True if it did."""

    conversation_id: str
    rate: int


@dataclass(frozen=True, slots=True)
class UpsertAccount:
    """Insert or update an account by id; the backend returns False if the username is taken."""

    account: Account
    now: float


@dataclass(frozen=True, slots=True)
class ClaimEpoch:
    """Store `epoch` if it is greater than the stored leader epoch; True if it was."""

    epoch: int


@dataclass(frozen=True, slots=True)
class Ping:
    """A trivial write (the leader epoch row set to itself): proves the database takes writes.

    Goes through the FIFO like any write, so it also proves the writer is moving
    (the readiness probe, `Store.ping`). The backend returns None.
    """


@dataclass(frozen=True, slots=True)
class CheckEpoch:
    """Lock the leader epoch row for the rest of the transaction and check it is `epoch`.

    The backend raises `Fenced(epoch)` if it is not; its result is None.
    """

    epoch: int


WriteOp: TypeAlias = (
    NewMessage | LifecycleWrite | SetRate | UpsertAccount | ClaimEpoch | CheckEpoch | Ping
)


class BatchBackend(Protocol):
    """The database side of `ThreadWriter`; all methods run on the writer thread."""

    def open(self) -> None:
        """Connect; raise if the database cannot be used."""

    def execute(self, ops: Sequence[WriteOp], isolate: bool) -> list[Any]:
        """Run `ops` in one transaction and commit; one result per op, in order.

        A `NewMessage` gives an `Appended`; `SetRate`, `UpsertAccount`,
        `ClaimEpoch`, `OpenConversation` and `CloseConversation` a bool (False: it
        changed nothing, e.g. a record run again); the other lifecycle records,
        `CheckEpoch` and `Ping` None. With
        `isolate`, each op runs in its own savepoint and an op that fails with
        an item error gives that exception as its result. On any other error
        (`Fenced` included): roll back and raise.
        """

    def is_item_error(self, exc: BaseException) -> bool:
        """True if `exc` is the fault of one op (constraint, bad value), not the database's."""

    def close(self) -> None: ...


class AsyncBatchBackend(Protocol):
    """The database side of `AsyncWriter`: `BatchBackend`'s contract, with coroutines."""

    async def open(self) -> None: ...
    async def execute(self, ops: Sequence[WriteOp], isolate: bool) -> list[Any]: ...
    def is_item_error(self, exc: BaseException) -> bool: ...
    async def close(self) -> None: ...


def message_runs(ops: Sequence[WriteOp]) -> Iterator[list[NewMessage] | WriteOp]:
    """`ops` in order, each run of consecutive messages as one list (one `executemany`)."""
    run: list[NewMessage] = []
    for op in ops:
        if isinstance(op, NewMessage):
            run.append(op)
            continue
        if run:
            yield run
            run = []
        yield op
    if run:
        yield run
