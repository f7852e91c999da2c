"""What webhooks and deliveries are: the records, their states and the limits on them."""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass, field
from typing import Literal, TypeAlias, TypeVar

T = TypeVar("T")

PENDING, WAITING, DELIVERED, FAILED = "pending", "waiting", "delivered", "failed"
Status = Literal["pending", "delivered", "failed"]  # as the API shows them
KEEP_FINISHED = 7 * 86400.0  # seconds a delivered or failed delivery stays listed
SEQ_SPAN = 1 << 16  # events one outbox row may hold (a run of messages: a batch at most)
CHUNK = 500  # values per IN (...) list
OUTBOX_ROWS = 64  # outbox rows read per fan-out
ERROR_CHARS = 256
PRUNE_ROWS = 200  # finished deliveries deleted per transaction


@dataclass(frozen=True, slots=True)
class Webhook:
    id: str
    url: str
    events: tuple[str, ...]  # as given: names, or ("*",)
    created_at: float
    secret: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class Delivery:
    """A delivery as the API lists it."""

    id: str
    webhook_id: str
    event: str
    status: Status
    attempts: int
    last_status: int | None  # HTTP status of the last attempt
    last_error: str | None  # or why it got none
    created_at: float
    last_attempt_at: float | None
    next_attempt_at: float | None  # pending: when it is tried next (None: after the one before)
    finished_at: float | None


@dataclass(frozen=True, slots=True)
class DueDelivery:
    """A pending delivery whose time has come, with what sending it needs."""

    id: str
    webhook_id: str
    subject: str
    event: str
    body: str
    attempts: int  # before this one
    created_at: float
    url: str
    secret: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one attempt got; `next_at` None means final (delivered, or given up)."""

    delivery: DueDelivery
    ok: bool
    at: float
    status: int | None = None
    error: str | None = None
    next_at: float | None = None


Steps: TypeAlias = Generator[None, None, T]  # work that yields where it may be paused


def drain(steps: Steps[T]) -> T:
    """Run `steps` to the end, without pausing; its result."""
    while True:
        try:
            next(steps)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]
