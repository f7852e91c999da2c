"""The webhook outbox: events written in the same transaction as the change that causes them.

A crash then neither loses an event nor invents one: the `webhook_outbox` row
commits or rolls back with the change. Two writers add rows:

* the group-commit writer, for the conversation lifecycle and messages: each
  backend asks `Outbox.rows(ops, results)` for the rows of a batch it has just
  run and inserts them all with **one statement**, before its COMMIT. A run
  of consecutive messages is one row (`ref`: their ids), so a batch of
  messages costs one row, and the worker expands it (`store/webhooks/fanout.py`);
* the account changes of the admin API (`queries.create_account`,
  `update_account`, `erase_account`): `account_event` in their transaction.

Nothing is written for an event no webhook subscribes to. The writer cannot
read the `webhooks` table per batch, so it asks `Subscriptions`, the events
this node last read from it (`server/webhooks/` refreshes it every few
seconds, and at once on the node whose API changed a webhook); an account
change reads the table in its own transaction.

Which records make which events (`EVENTS`):

* `Enqueue` -> `conversation.queued`;
* `OpenConversation` -> `conversation.assigned`; when the switchboard
  opened it for a transfer (`transferred_from`: the conversation it closed),
  `conversation.transferred` first;
* `CloseConversation` -> `conversation.closed`, and `conversation.rated` when
  it carries a rating; a late rating (`SetRate` that rated) ->
  `conversation.rated`;
* a stored message (not a resent one) -> `message.created`.

Opens and closes that changed nothing (a record run again) make no event.
Times in the events' data are RFC 3339 strings in UTC, as the chat frames'.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeAlias

from sqlalchemy import Connection, select

from kefu.core.commands import CloseConversation, Enqueue, OpenConversation
from kefu.store.base import Account, Appended, NewMessage
from kefu.store.tables import to_us, webhook_outbox, webhooks
from kefu.store.writer.ops import SetRate

QUEUED = "conversation.queued"
ASSIGNED = "conversation.assigned"
TRANSFERRED = "conversation.transferred"
CLOSED = "conversation.closed"
RATED = "conversation.rated"
MESSAGE_CREATED = "message.created"
ACCOUNT_CREATED = "account.created"
ACCOUNT_UPDATED = "account.updated"
ACCOUNT_ERASED = "account.erased"
EVENTS: tuple[str, ...] = (
    QUEUED,
    ASSIGNED,
    TRANSFERRED,
    CLOSED,
    RATED,
    MESSAGE_CREATED,
    ACCOUNT_CREATED,
    ACCOUNT_UPDATED,
    ACCOUNT_ERASED,
)
ALL = "*"  # a webhook's `events` of ["*"]: every event, those added later too

# (event, subject, conversation_id, ref, created_at in microseconds, data as JSON)
OutboxRow: TypeAlias = tuple[str, str | None, str | None, str | None, int, str | None]
OUTBOX_COLUMNS = ("event", "subject", "conversation_id", "ref", "created_at", "data")


def subscribed(events: Iterable[str]) -> frozenset[str]:
    """The event names a webhook's `events` list stands for (`*` is all of them)."""
    names = set(events)
    return frozenset(EVENTS) if ALL in names else frozenset(names & set(EVENTS))


def rfc3339_us(us: int) -> str:
    """Microseconds since the epoch as RFC 3339 UTC (safe on any thread; no cache)."""
    seconds, micros = divmod(us, 1_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{micros:06d}Z"


def _time(seconds: float | None) -> str | None:
    return None if seconds is None else rfc3339_us(to_us(seconds))


def _json(data: dict[str, Any]) -> str:
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False)


class Subscriptions:
    """The events some webhook subscribes to, as this node last read them (the writer's flag).

    Replaced as a whole (`set`), so a writer thread reading `events` sees one
    set or the other, never half of one.
    """

    __slots__ = ("events",)

    def __init__(self) -> None:
        self.events: frozenset[str] = frozenset()

    def set(self, lists: Iterable[Iterable[str]]) -> None:
        """From the `events` of every webhook."""
        names: set[str] = set()
        for events in lists:
            names |= subscribed(events)
        self.events = frozenset(names)


class Outbox:
    """The outbox rows of a writer's batch (one per backend; see the module docstring)."""

    def __init__(
        self, subscriptions: Subscriptions, clock: Callable[[], float] = time.time
    ) -> None:
        self.subscriptions = subscriptions
        self.clock = clock

    def rows(self, ops: Sequence[Any], results: Sequence[Any]) -> list[OutboxRow]:
        """The rows for `ops`, which ran with `results` (one each; an exception: not stored)."""
        wanted = self.subscriptions.events
        if not wanted:
            return []
        now = to_us(self.clock())
        rows: list[OutboxRow] = []
        messages = MESSAGE_CREATED in wanted
        run: list[str] = []  # ids of the current run of stored messages
        for op, result in zip(ops, results, strict=True):
            if type(op) is NewMessage:
                # a resent message (same or other body) was stored, and told, before
                if (
                    messages
                    and type(result) is Appended
                    and not (result.duplicate or result.conflict)
                ):
                    run.append(op.id)
                continue
            if isinstance(result, BaseException):
                continue
            if run:
                rows.append((MESSAGE_CREATED, None, None, ",".join(run), now, None))
                run = []
            self._record(op, result, wanted, now, rows)
        if run:
            rows.append((MESSAGE_CREATED, None, None, ",".join(run), now, None))
        return rows

    def _record(
        self, op: Any, result: Any, wanted: frozenset[str], now: int, rows: list[OutboxRow]
    ) -> None:
        match op:
            case Enqueue(user_id, queued_at):
                if QUEUED in wanted:
                    data = {"user_id": user_id, "queued_at": _time(queued_at)}
                    rows.append((QUEUED, user_id, None, None, now, _json(data)))
            case OpenConversation(cid, user_id, waiter_id, opened_at, queued_at, transfer):
                if result is False:  # it was there already
                    return
                if transfer is not None and TRANSFERRED in wanted:
                    data = {
                        "conversation_id": cid,
                        "user_id": user_id,
                        "waiter_id": waiter_id,
                        "opened_at": _time(opened_at),
                        "from_conversation_id": transfer,
                    }
                    rows.append((TRANSFERRED, None, cid, transfer, now, _json(data)))
                if ASSIGNED in wanted:
                    data = {
                        "conversation_id": cid,
                        "user_id": user_id,
                        "waiter_id": waiter_id,
                        "opened_at": _time(opened_at),
                        "queued_at": _time(queued_at),
                    }
                    rows.append((ASSIGNED, None, cid, None, now, _json(data)))
            case CloseConversation(cid, reason, closed_at, rate):
                if result is False:  # closed already
                    return
                if CLOSED in wanted:
                    closed: dict[str, Any] = {
                        "conversation_id": cid,
                        "reason": str(getattr(reason, "value", reason)),
                        "closed_at": _time(closed_at),
                        "rate": rate,
                    }
                    rows.append((CLOSED, None, cid, None, now, _json(closed)))
                if rate is not None and RATED in wanted:
                    rows.append((RATED, None, cid, None, now, _rated(cid, rate)))
            case SetRate(cid, rate):
                if result is True and RATED in wanted:
                    rows.append((RATED, None, cid, None, now, _rated(cid, rate)))


def _rated(conversation_id: str, rate: int) -> str:
    return _json({"conversation_id": conversation_id, "rate": rate})


# -- account events (the admin API's changes, in their own transactions) -------------------
def account_data(account: Account) -> dict[str, Any]:
    """An account as events show it: as the admin API does, never a password hash."""
    return {
        "id": account.id,
        "username": account.username,
        "nickname": account.nickname,
        "avatar": account.avatar,
        "role": account.role.value,
        "kind": account.kind.value,
        "external_id": account.external_id,
        "created_at": _time(account.created_at),
        "disabled": account.disabled_at is not None,
        "erased": account.erased_at is not None,
    }


def account_event(conn: Connection, event: str, account: Account, now: float | None = None) -> None:
    """Add `event` about `account` to the outbox in `conn`'s transaction, if subscribed.

    Reads the webhooks in the same transaction: account changes are rare, and
    this way one made right after a webhook was created is never missed.
    """
    lists = conn.execute(select(webhooks.c.events)).scalars().all()
    if not any(event in subscribed(event_names(events)) for events in lists):
        return
    values = dict(
        zip(
            OUTBOX_COLUMNS,
            (
                event,
                account.id,
                None,
                None,
                to_us(now or time.time()),
                _json(account_data(account)),
            ),
            strict=True,
        )
    )
    conn.execute(webhook_outbox.insert().values(values))


def event_names(events: str) -> list[str]:
    """A webhook's stored `events` (JSON) as names; [] for anything else."""
    try:
        names = json.loads(events)
    except ValueError:
        return []
    return [n for n in names if isinstance(n, str)] if isinstance(names, list) else []
