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
from dataclasses import dataclass, field, fields
from enum import Enum
from typing import Any, Protocol

from kefu.core.commands import CloseConversation, Dequeue, Enqueue, OpenConversation
from kefu.core.model import AccountKind, Profile, Role
from kefu.store.records import (
    ConversationFilter,
    ConversationRecord,
    MessageRecord,
    PeriodStats,
    Purged,
    QueuedRecord,
)

LifecycleWrite = Enqueue | Dequeue | OpenConversation | CloseConversation


class StoreError(Exception):
    """Root of the store's errors."""


class AccountExists(StoreError):
    """An account with that username or id is already there."""


class NameTaken(StoreError):
    """An API key with that name exists (revoked keys keep their names)."""


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
    # the lifecycle (the admin API); None: never disabled / no logout / not erased
    # set by the store (None until read back from it); not part of an account's equality
    created_at: float | None = field(default=None, compare=False)
    disabled_at: float | None = None  # a disabled account cannot authenticate
    tokens_after: float | None = None  # tokens with an older `iat` (or none) are refused
    erased_at: float | None = None

    def __post_init__(self) -> None:
        # a role or kind given by name ("waiter") is the enum from here on; a bad name fails here
        object.__setattr__(self, "role", Role(self.role))
        object.__setattr__(self, "kind", AccountKind(self.kind))

    def profile(self) -> Profile:
        return Profile(
            id=self.id, username=self.username, nickname=self.nickname, avatar=self.avatar
        )

    def accepts(self, iat: float | None) -> bool:
        """True if a token issued at `iat` may authenticate as this account now."""
        if self.disabled_at is not None:
            return False
        after = self.tokens_after
        return after is None or (iat is not None and iat >= after)


class Keep(Enum):
    """`KEEP`: a field an `AccountUpdate` leaves as it is."""

    KEEP = "keep"


KEEP = Keep.KEEP


@dataclass(frozen=True, slots=True)
class AccountUpdate:
    """What to change in an account; every field left `KEEP` stays as stored."""

    nickname: str | Keep | None = KEEP
    avatar: str | Keep = KEEP
    password_hash: str | Keep | None = KEEP
    role: Role | Keep = KEEP
    disabled_at: float | Keep | None = KEEP
    tokens_after: float | Keep | None = KEEP

    def changes(self) -> dict[str, object]:
        """The fields to set, by column name."""
        values = ((f.name, getattr(self, f.name)) for f in fields(self))
        return {name: value for name, value in values if value is not KEEP}


@dataclass(frozen=True, slots=True)
class AccountFilter:
    """Which accounts a listing shows: `q` is a substring of the username or nickname."""

    role: Role | None = None
    q: str | None = None


@dataclass(frozen=True, slots=True)
class ApiKey:
    """A key of the admin API, as listed (the key itself is never stored)."""

    id: str
    name: str
    prefix: str  # the key's first characters
    read_only: bool
    created_at: float
    last_used_at: float | None = None
    revoked_at: float | None = None


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

    # -- the account lifecycle and the admin API (cold, rare) ------------------
    async def list_accounts(
        self, where: AccountFilter, after: str | None, limit: int
    ) -> list[Account]:
        """Accounts newest first by (created_at, id): those after the account `after` (an id)."""

    async def update_account(self, account_id: str, update: AccountUpdate) -> Account | None:
        """Change the fields `update` sets; the account as stored after, None if unknown."""

    async def erase_account(self, account_id: str, now: float) -> Account | None:
        """Erase a person: profile cleared, what they wrote removed; None if unknown.

        The username becomes `erased-<id>`, nickname and password hash and
        external id are cleared, the avatar emptied; the account is disabled
        and its tokens refused from `now` (kept if it was erased before).
        Every message it sent gets an empty payload of its type
        (`{"text": "", "erased": true}`, `{"image": "", "erased": true}`).
        Its conversations stay, as anonymous records. Idempotent.
        """

    async def create_api_key(self, key: ApiKey, key_hash: str) -> ApiKey:
        """Insert; `NameTaken` if a key (even a revoked one) has that name."""

    async def api_key_by_hash(self, key_hash: str) -> ApiKey | None:
        """The key with this SHA-256 (hex), revoked or not."""

    async def list_api_keys(self) -> list[ApiKey]:
        """Every key, revoked ones too, oldest first."""

    async def revoke_api_key(self, name_or_id: str, now: float) -> ApiKey | None:
        """Revoke the key of that name (or id); None if there is none. Idempotent."""

    async def touch_api_key(self, key_id: str, now: float) -> None:
        """Note that the key was used at `now`."""

    async def delete_api_key(self, key_id: str) -> None:
        """Remove a key altogether (the command line's own short-lived keys)."""

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

    # -- records for the admin API, the export and retention (`reports.Reports`) -----------
    async def list_conversations(
        self,
        where: ConversationFilter,
        after: tuple[int, str] | None,
        limit: int,
        *,
        oldest_first: bool = False,
    ) -> list[ConversationRecord]:
        """By (opened_at, id), newest first unless `oldest_first`; after (opened_at µs, id)."""

    async def list_queued(
        self, where: ConversationFilter, after: tuple[int, int] | None, limit: int
    ) -> list[QueuedRecord]:
        """Queue entries in queue order, after (queued_at µs, seq)."""

    async def get_conversation(self, conversation_id: str) -> ConversationRecord | None:
        """One conversation with its message count."""

    async def conversation_messages(
        self, conversation_id: str, after: str | None, limit: int
    ) -> list[MessageRecord]:
        """A conversation's messages by id, after the id `after`."""

    async def period_stats(self, since: float, until: float) -> PeriodStats:
        """How the desk did in [since, until) (`record_queries.period_stats`)."""

    async def purge_batch(
        self, before: float, *, conversations_max: int = 500, messages_max: int = 5000
    ) -> Purged:
        """One short transaction of retention: closed conversations (and departures) older
        than `before` (`record_queries.purge_batch`); `Purged()` once nothing is left."""
