"""What happened: the only input of the switchboard.

Sockets are named by their socket UUID (a string made by the server);
accounts by their profile id.
"""

from __future__ import annotations

from dataclasses import dataclass

from kefu.core.model import Profile, TimerKey


@dataclass(frozen=True, slots=True)
class UserAuthed:
    """A user socket authenticated. Re-attaches a kept queue place or conversation."""

    socket: str
    profile: Profile


@dataclass(frozen=True, slots=True)
class UserConnect:
    """The user asked for a waiter (`connect`)."""

    socket: str


@dataclass(frozen=True, slots=True)
class UserDisconnect:
    """The user left the queue or ended its conversation (`disconnect`)."""

    socket: str


@dataclass(frozen=True, slots=True)
class UserRate:
    """The user rated its open conversation, which ends it."""

    socket: str
    rate: int


@dataclass(frozen=True, slots=True)
class WaiterAuthed:
    """A waiter socket authenticated. Kicks out an older socket, re-attaches conversations."""

    socket: str
    profile: Profile


@dataclass(frozen=True, slots=True)
class WaiterReady:
    socket: str


@dataclass(frozen=True, slots=True)
class WaiterUnready:
    socket: str


@dataclass(frozen=True, slots=True)
class WaiterEnd:
    """The waiter ended the conversation with the user on `user_socket`."""

    socket: str
    user_socket: str


@dataclass(frozen=True, slots=True)
class WaiterTransfer:
    """[ext] Move the conversation with `user_socket` to the ready waiter `waiter_id`."""

    socket: str
    user_socket: str
    waiter_id: str


@dataclass(frozen=True, slots=True)
class SocketClosed:
    """A socket went away (any side, authenticated or not)."""

    socket: str


@dataclass(frozen=True, slots=True)
class TimerFired:
    """A timer started by `StartTimer` is due.

    `last_activity` is when the socket the timer concerns last sent a frame
    (the runtime fills it in for idle timers; the switchboard never sees
    every frame, so it cannot know it otherwise).
    """

    key: TimerKey
    last_activity: float | None = None


@dataclass(frozen=True, slots=True)
class QueuedRestored:
    """A queue entry found in storage when the switchboard is rebuilt."""

    profile: Profile
    queued_at: float


@dataclass(frozen=True, slots=True)
class ConversationRestored:
    """An open conversation found in storage when the switchboard is rebuilt."""

    conversation_id: str
    user: Profile
    waiter: Profile
    opened_at: float
    queued_at: float | None = None  # the user's arrival; opened_at if unknown


@dataclass(frozen=True, slots=True)
class AccountChanged:
    """An account was changed outside the chat (the admin API), after the change was stored.

    Every node forgets its cached copy. With `hang_up` (disabled, erased,
    logged out) every socket of the account is closed at once and its queue
    place or conversations end as if the resume grace had run out.
    """

    account_id: str
    hang_up: bool = False


Event = (
    UserAuthed
    | UserConnect
    | UserDisconnect
    | UserRate
    | WaiterAuthed
    | WaiterReady
    | WaiterUnready
    | WaiterEnd
    | WaiterTransfer
    | SocketClosed
    | TimerFired
    | QueuedRestored
    | ConversationRestored
    | AccountChanged
)
