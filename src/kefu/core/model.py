"""Plain values shared by events, commands and the switchboard."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Role(StrEnum):
    USER = "user"
    WAITER = "waiter"
    ADMIN = "admin"


class AccountKind(StrEnum):
    """Who made an account, and so which namespace its tokens name it in."""

    LOCAL = "local"  # made by kefu (CLI, API, demo); its tokens carry its kefu id
    EXTERNAL = "external"  # made from a host application's token; named by that token's `sub`


@dataclass(frozen=True, slots=True)
class Profile:
    """The public face of an account, as sent on the wire."""

    id: str
    username: str
    nickname: str | None = None
    avatar: str = ""

    def as_payload(self, **extra: object) -> dict[str, object]:
        data: dict[str, object] = {
            "id": self.id,
            "username": self.username,
            "nickname": self.nickname,
            "avatar": self.avatar,
        }
        data.update(extra)
        return data


class Hangup(StrEnum):
    """Why the switchboard closes a socket (the server maps each to a close code)."""

    IDLE = "idle"  # the user said nothing through the idle timeout and its grace
    KICKOUT = "kickout"  # the same waiter signed in on another socket
    REVOKED = "revoked"  # the account was disabled, erased or logged out (the admin API)


class TimerKind(StrEnum):
    IDLE = "idle"  # subject: a user socket
    USER_GRACE = "user_grace"  # subject: a user id whose socket dropped
    WAITER_GRACE = "waiter_grace"  # subject: a waiter id whose socket dropped


@dataclass(frozen=True, slots=True, order=True)
class TimerKey:
    """Names a timer: starting one with the key of a running one replaces it."""

    kind: TimerKind
    subject: str

    @classmethod
    def idle(cls, socket: str) -> TimerKey:
        return cls(TimerKind.IDLE, socket)

    @classmethod
    def user_grace(cls, user_id: str) -> TimerKey:
        return cls(TimerKind.USER_GRACE, user_id)

    @classmethod
    def waiter_grace(cls, waiter_id: str) -> TimerKey:
        return cls(TimerKind.WAITER_GRACE, waiter_id)


class CloseReason(StrEnum):
    """Why a conversation ended; stored with it."""

    USER_LEFT = "user_left"
    WAITER_ENDED = "waiter_ended"
    USER_IDLE = "user_idle"
    USER_GONE = "user_gone"  # socket dropped and the resume grace ran out
    WAITER_GONE = "waiter_gone"  # waiter dropped; the user went back to the queue
    RATED = "rated"
    TRANSFERRED = "transferred"
