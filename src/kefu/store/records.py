"""What the admin side reads of the chat's records: conversations, queue entries, messages.

The types the `Store`'s record methods return (`reports.Reports`, SQL in
`record_queries.py`): the admin API's conversation list, its transcripts and
statistics, the export and retention. Times are float Unix seconds, as
everywhere at the store's interface.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from kefu.core.model import Profile


class ConversationState(StrEnum):
    QUEUED = "queued"  # a queue entry: no conversation yet (one is made at assignment)
    OPEN = "open"
    CLOSED = "closed"


@dataclass(frozen=True, slots=True)
class ConversationFilter:
    """Which conversations (and queue entries) a listing shows.

    `state` None: every state. `since` / `until` bound the opening time of a
    conversation (the arrival of a queued user): since <= t < until.
    """

    state: ConversationState | None = None
    user_id: str | None = None
    waiter_id: str | None = None
    since: float | None = None
    until: float | None = None


@dataclass(frozen=True, slots=True)
class ConversationRecord:
    """A conversation with both profiles (`messages`: its message count, when asked for)."""

    id: str
    user: Profile
    waiter: Profile
    opened_at: float  # when a waiter was assigned
    queued_at: float | None  # the user's arrival (kept when it went back to the queue)
    closed_at: float | None = None
    close_reason: str | None = None
    rate: int | None = None
    messages: int | None = None

    @property
    def state(self) -> ConversationState:
        return ConversationState.OPEN if self.closed_at is None else ConversationState.CLOSED


@dataclass(frozen=True, slots=True)
class QueuedRecord:
    """A queue entry, in queue order (`queued_at`, then `seq`)."""

    user: Profile
    queued_at: float
    seq: int


@dataclass(frozen=True, slots=True)
class MessageRecord:
    id: str
    conversation_id: str
    type: str  # "message_text" | "message_image"
    sender: Profile
    receiver_id: str
    payload: Any  # decoded JSON: {"text": ...} or {"image": ...}
    created: float


@dataclass(frozen=True, slots=True)
class Spread:
    """Durations in seconds: how many, their mean and nearest-rank p50 and p90."""

    count: int = 0
    mean: float | None = None  # None without values
    p50: float | None = None
    p90: float | None = None


@dataclass(frozen=True, slots=True)
class PeriodStats:
    """How the desk did over a period (see `record_queries.period_stats`).

    Conversations count by opening time, departures from the queue by when
    they happened.
    """

    conversations: int
    served: int  # users a waiter took from the queue
    left: int  # users who left the queue before a waiter took them
    waits: Spread  # queued -> assigned, per user served
    first_replies: Spread  # assigned -> the waiter's first message, per conversation
    handling: Spread  # assigned -> closed, per closed conversation
    ratings: dict[int, int] = field(default_factory=dict)  # stars -> conversations


@dataclass(frozen=True, slots=True)
class Purged:
    """What one purge batch deleted."""

    conversations: int = 0
    messages: int = 0
    queue_exits: int = 0

    def __add__(self, other: Purged) -> Purged:
        return Purged(
            self.conversations + other.conversations,
            self.messages + other.messages,
            self.queue_exits + other.queue_exits,
        )

    @property
    def rows(self) -> int:
        return self.conversations + self.messages + self.queue_exits
