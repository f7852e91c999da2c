"""The Store protocol: everything kefu keeps, behind one small interface.

Two kinds of work go through a store:

* the **write path**: messages and lifecycle records (queue entries,
  conversation open/close) go into one FIFO queue drained by a group-commit
  writer. Everything queued is committed in one transaction, and only then are
  the `done` callbacks of the messages in it called, on the event loop, in
  submission order. An ack sent from `done` therefore means "committed".
* **cold reads** (accounts, history, sessions, state at start): plain
  coroutines.

Errors: a store raises only `StoreError`s. Whatever its database driver or the
file system raises becomes `StoreUnavailable` (the cause kept as `__cause__`),
so callers catch `StoreError` and never a driver's exceptions. In a cluster,
the leader's lifecycle records carry its epoch (`claim_epoch`, `write(...,
epoch)`): a leader whose epoch was superseded gets `Fenced` instead of
writing.

All times are float seconds since the Unix epoch (UTC) at this interface;
tables keep them as integer microseconds. Ids are strings. Nothing here
returns ORM rows.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from kefu.core.commands import CloseConversation, Dequeue, Enqueue, OpenConversation
from kefu.core.model import AccountKind, Profile, Role

LifecycleWrite = Enqueue | Dequeue | OpenConversation | CloseConversation


class StoreError(Exception):
    """Root of the store's errors."""


class AccountExists(StoreError):
    """An account with that username or id is already there."""


class StoreUnavailable(StoreError):
    """The database refused or failed the work (a write: nothing of its batch was committed)."""


class Fenced(StoreError):
    """A write guarded by a leader epoch found a newer epoch claimed: it was not committed.

    Raised by `flush` (and given, inside `StoreUnavailable`, to the messages of
    the batch); the store also calls its `on_fenced(epoch)`.
    """

    def __init__(self, epoch: int) -> None:
        super().__init__(f"leader epoch {epoch} is no longer the stored one")
        self.epoch = epoch


@dataclass(frozen=True, slots=True)
class Account:
    """An account. `id` is kefu's; an external account is also named by `external_id`.

    An external account's `id` is its `external_id` unless that was taken
    when it was made (then a generated id): the profile a host application
    sees carries the user id it signed, in all but that case.
    """

    id: str
    username: str
    role: Role
    nickname: str | None = None
    avatar: str = ""
    password_hash: str | None = None
    kind: AccountKind = AccountKind.LOCAL
    external_id: str | None = None

    def __post_init__(self) -> None:
        # a role or kind given by name ("waiter") is the enum from here on; a bad name fails here
        object.__setattr__(self, "role", Role(self.role))
        object.__setattr__(self, "kind", AccountKind(self.kind))

    def profile(self) -> Profile:
        return Profile(
            id=self.id, username=self.username, nickname=self.nickname, avatar=self.avatar
        )


# NewMessage and Appended are made for every message: not frozen, since a frozen
# dataclass's __init__ sets every field through object.__setattr__.
@dataclass(slots=True)
class NewMessage:
    id: str  # fixed-width, time-ordered (kefu.ids)
    conversation_id: str
    type: str  # "message_text" | "message_image"
    sender_id: str
    receiver_id: str
    payload: bytes  # the payload as JSON text, e.g. b'{"text":"hi"}'
    op_id: str | None
    created: float


@dataclass(slots=True)
class Appended:
    """What the writer did with one `NewMessage`.

    `duplicate`: (sender, op_id) was stored before with the same type and
    payload; `id` and `created` are then those of the stored row.
    `conflict`: (sender, op_id) was stored before with a different body;
    nothing was written (the protocol answers 100006).
    """

    id: str
    created: float
    duplicate: bool = False
    conflict: bool = False


@dataclass(frozen=True, slots=True)
class StoredMessage:
    id: str
    conversation_id: str
    type: str
    sender_id: str
    receiver_id: str
    payload: Any  # decoded JSON
    op_id: str | None
    created: float


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    id: str
    type: str
    sender: Profile
    receiver: Profile
    payload: Any
    created: float


@dataclass(frozen=True, slots=True)
class Conversation:
    id: str
    user_id: str
    waiter_id: str
    opened: float
    closed: float | None = None
    close_reason: str | None = None
    rate: int | None = None
    queued: float | None = None  # when the user first queued (its place if requeued)


@dataclass(frozen=True, slots=True)
class SessionEntry:
    """One row of a waiter's session history: its latest conversation with one user."""

    conversation_id: str
    user: Profile
    waiter: Profile
    latest: HistoryEntry | None
    created: float


@dataclass(frozen=True, slots=True)
class QueueEntry:
    user: Profile
    queued_at: float


@dataclass(frozen=True, slots=True)
class OpenState:
    """Queue and open conversations as stored: what a switchboard is rebuilt from."""

    queue: list[QueueEntry]  # in queue order (queued_at, then insertion)
    conversations: list[tuple[Conversation, Profile, Profile]]  # (conversation, user, waiter)


AppendDone = Callable[[Appended | BaseException], None]


class Store(Protocol):
    on_fenced: Callable[[int], None] | None
    """Called on the loop with the epoch, once for every batch a newer epoch fenced."""

    async def start(self) -> None:
        """Open connections and start the writer. The schema must already be migrated."""

    async def close(self) -> None:
        """Commit everything queued, then stop the writer and close connections."""

    # -- write path ---------------------------------------------------------
    def append(self, message: NewMessage, done: AppendDone) -> None:
        """Queue a message. `done` runs on the loop after its batch commits (or failed)."""

    def write(self, record: LifecycleWrite, epoch: int | None = None) -> None:
        """Queue a lifecycle record, in the same FIFO as messages (never awaited).

        With an `epoch` (a cluster's leader), its batch commits only while the
        stored epoch is still `epoch` (checked in the same transaction); if it
        is not, the batch fails with `Fenced`, the record is dropped and
        `on_fenced(epoch)` runs. Without one, nothing is checked.
        """

    async def claim_epoch(self, epoch: int) -> bool:
        """Store `epoch` if it is greater than the stored one; False (nothing changed) if not.

        Goes through the writer's FIFO, after everything queued before it.
        """

    async def ping(self) -> None:
        """Commit a trivial write through the writer's FIFO; `StoreUnavailable` if it fails.

        What readiness means for a store: the database takes writes and the
        writer is moving (it waits behind whatever was queued before it).
        """

    async def flush(self) -> None:
        """Return once everything queued before the call is committed.

        Raises `StoreUnavailable` if that failed, and `Fenced` if a guarded
        record queued since the previous flush was fenced (in whatever batch).
        """

    # -- accounts -----------------------------------------------------------
    async def create_account(self, account: Account) -> Account:
        """Insert; `AccountExists` if its id, or its username in its kind, is taken."""

    async def get_account(self, account_id: str) -> Account | None: ...
    async def get_account_by_username(
        self, username: str, kind: AccountKind = AccountKind.LOCAL
    ) -> Account | None: ...
    async def get_external_account(self, external_id: str) -> Account | None:
        """The account a host application's token with this `sub` names, if it exists."""

    async def upsert_account(self, account: Account) -> None:
        """Insert or update an external account by `external_id` (never a local one).

        `AccountExists` if its id belongs to another account, or its username to
        another account of its kind.
        """

    # -- reads --------------------------------------------------------------
    async def history(
        self, user_id: str, before: str | None = None, limit: int = 100
    ) -> list[HistoryEntry]:
        """The user's messages, newest first, ids below `before`.

        Every message, both ways, of the conversations whose user is `user_id`
        (an account that is only ever the waiter of its conversations has none).
        """

    async def sessions(self, waiter_id: str, limit: int = 100) -> list[SessionEntry]:
        """The waiter's latest conversation with each user, newest first."""

    async def latest_conversation(self, user_id: str) -> Conversation | None: ...

    async def rate(self, conversation_id: str, rate: int) -> bool:
        """Rate a conversation that has no rating yet; False if it already had one."""

    async def messages_after(
        self, conversation_id: str, after_id: str, limit: int = 1000
    ) -> list[StoredMessage]:
        """Messages of a conversation with id > after_id, oldest first (resume replay)."""

    async def load_open_state(self) -> OpenState: ...
