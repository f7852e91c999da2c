"""A switchboard and its people, as the core's scenario tests make them."""

from __future__ import annotations

import itertools

from kefu.core.commands import Command
from kefu.core.events import UserAuthed, UserConnect
from kefu.core.model import Profile
from kefu.core.switchboard import Switchboard


def user(n: int) -> Profile:
    return Profile(f"u{n}", f"user{n}")


def board(*, capacity: int, resume_grace: float = 0.0) -> Switchboard:
    """Ids c1, c2, ... for the conversations it opens; idle timers far away."""
    ids = itertools.count(1)
    return Switchboard(
        capacity=capacity,
        idle_timeout=600.0,
        idle_grace=60.0,
        resume_grace=resume_grace,
        new_id=lambda: f"c{next(ids)}",
    )


def connect(sb: Switchboard, n: int, now: float, socket: str | None = None) -> list[Command]:
    """User n signs in on `socket` (us<n>) and asks for a waiter."""
    socket = socket or f"us{n}"
    sb.handle(UserAuthed(socket, user(n)), now)
    return sb.handle(UserConnect(socket), now)
