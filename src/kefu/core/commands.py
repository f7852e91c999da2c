"""What to do: the only output of the switchboard, carried out in order."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from kefu.core.model import CloseReason, Hangup, TimerKey


@dataclass(frozen=True, slots=True)
class Send:
    """Send one frame to a socket. `frm` is the other party's socket UUID."""

    socket: str
    type: str
    frm: str | None = None
    payload: Any = None


@dataclass(frozen=True, slots=True)
class Close:
    """Close a socket, for a reason the server maps to a WebSocket close code."""

    socket: str
    why: Hangup


@dataclass(frozen=True, slots=True)
class Enqueue:
    """Store a queue entry for the user (SQL is the truth for the queue)."""

    user_id: str
    queued_at: float


@dataclass(frozen=True, slots=True)
class Dequeue:
    """Delete the user's queue entry, and record its departure (the `queue_exits` table).

    `served`: a waiter took the user (else it left while queued); `left_at`:
    when, on the switchboard's clock (None records no departure). Both are
    facts for the statistics that do not change what the record does to the
    queue, so a `Dequeue` is still equal to another of the same user.
    """

    user_id: str
    served: bool = field(default=False, compare=False)
    left_at: float | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class OpenConversation:
    conversation_id: str
    user_id: str
    waiter_id: str
    opened_at: float
    queued_at: float | None = None  # the user's arrival: a restart requeues it in its place
    # the conversation a transfer closed for this one (the webhook event says so); not
    # part of what the record is
    transferred_from: str | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class CloseConversation:
    conversation_id: str
    reason: CloseReason
    closed_at: float
    rate: int | None = None


@dataclass(frozen=True, slots=True)
class Route:
    """Pair two sockets for the message path, replacing any earlier pairing of either.

    Messages flow socket to socket without asking the switchboard; this is how
    the message path learns who talks to whom.
    """

    conversation_id: str
    user_id: str
    user_socket: str | None  # the last known socket; delivery skips it if it is gone
    waiter_id: str
    waiter_socket: str | None


@dataclass(frozen=True, slots=True)
class Unroute:
    conversation_id: str
    user_socket: str | None = None
    waiter_socket: str | None = None


@dataclass(frozen=True, slots=True)
class StartTimer:
    """Feed `TimerFired(key)` back at `at` (the clock of `now`); replaces a timer of that key."""

    key: TimerKey
    at: float


@dataclass(frozen=True, slots=True)
class CancelTimer:
    key: TimerKey


@dataclass(frozen=True, slots=True)
class Forget:
    """Every node drops what it cached of the account (it changed; read it again).

    `hang_up`: each node also closes the account's sockets it holds, those the
    switchboard closed and any whose `auth` it has not seen yet.
    """

    account_id: str
    hang_up: bool = False


Command = (
    Send
    | Close
    | Enqueue
    | Dequeue
    | OpenConversation
    | CloseConversation
    | Route
    | Unroute
    | StartTimer
    | CancelTimer
    | Forget
)
