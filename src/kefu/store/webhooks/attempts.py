"""Attempts: which deliveries are due, what each attempt got, and the upkeep.

A delivered one, or one that failed for good, makes the next delivery of its
subject pending (`record`); `repair` does the same where two workers ever
left a subject with none pending; `prune` deletes finished deliveries once
they are old.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, bindparam, delete, select, update

from kefu.ids import id_at
from kefu.store.tables import from_us, to_us, webhook_deliveries, webhooks
from kefu.store.webhooks.model import (
    DELIVERED,
    ERROR_CHARS,
    FAILED,
    PENDING,
    PRUNE_ROWS,
    WAITING,
    DueDelivery,
    Outcome,
)


def due(conn: Connection, now: float, limit: int, busy: Sequence[str]) -> list[DueDelivery]:
    """Pending deliveries whose time has come, soonest first, but those in `busy` (ids)."""
    d, w = webhook_deliveries, webhooks
    query = (
        select(
            d.c.id,
            d.c.webhook_id,
            d.c.subject,
            d.c.event,
            d.c.body,
            d.c.attempts,
            d.c.created_at,
            w.c.url,
            w.c.secret,
        )
        .join(w, w.c.id == d.c.webhook_id)
        .where(d.c.status == PENDING, d.c.next_at <= to_us(now))
        .order_by(d.c.next_at)
        .limit(max(1, limit))
    )
    if busy:
        query = query.where(d.c.id.not_in(list(busy)))
    return [
        DueDelivery(
            id=r["id"],
            webhook_id=r["webhook_id"],
            subject=r["subject"],
            event=r["event"],
            body=r["body"] or "",
            attempts=r["attempts"],
            created_at=from_us(r["created_at"]),
            url=r["url"],
            secret=r["secret"],
        )
        for r in conn.execute(query).mappings()
    ]


def _promotion() -> Any:
    """UPDATE: the first waiting delivery of (`p_hook`, `p_subject`) pending, due at `p_at`.

    Only if the subject has no pending delivery: so it is safe to run for a
    subject whose head is still pending (it changes nothing then).
    """
    d = webhook_deliveries
    first, other = d.alias("first"), d.alias("other")
    hook: Any = bindparam("p_hook")
    subject: Any = bindparam("p_subject")
    head = (
        select(first.c.id)
        .where(first.c.webhook_id == hook, first.c.subject == subject, first.c.status == WAITING)
        .order_by(first.c.seq)
        .limit(1)
        .scalar_subquery()
    )
    pending = (
        select(other.c.id)
        .where(other.c.webhook_id == hook, other.c.subject == subject, other.c.status == PENDING)
        .exists()
    )
    return (
        update(d).where(d.c.id == head, ~pending).values(status=PENDING, next_at=bindparam("p_at"))
    )


def _attempted(final: bool) -> Any:
    """UPDATE of one attempt's outcome (executemany), on a delivery still pending."""
    d = webhook_deliveries
    values: dict[str, Any] = {
        "attempts": d.c.attempts + 1,
        "last_status": bindparam("b_status"),
        "last_error": bindparam("b_error"),
        "last_attempt_at": bindparam("b_at"),
    }
    if final:
        values.update(status=bindparam("b_final"), next_at=None, finished_at=bindparam("b_at"))
        values["body"] = None
    else:
        values["next_at"] = bindparam("b_next")
    return update(d).where(d.c.id == bindparam("b_id"), d.c.status == PENDING).values(values)


_PROMOTION = _promotion()
_RETRIED = _attempted(final=False)
_FINISHED = _attempted(final=True)


def record(conn: Connection, outcomes: Sequence[Outcome]) -> None:
    """Store what the attempts got, in one transaction; finished ones free their subject."""
    retried: list[dict[str, Any]] = []
    finished: list[dict[str, Any]] = []
    freed: dict[tuple[str, str], int] = {}
    for o in outcomes:
        at = to_us(o.at)
        row: dict[str, Any] = {
            "b_id": o.delivery.id,
            "b_status": o.status,
            "b_error": None if o.error is None else o.error[:ERROR_CHARS],
            "b_at": at,
        }
        if o.ok or o.next_at is None:
            finished.append({**row, "b_final": DELIVERED if o.ok else FAILED})
            freed[(o.delivery.webhook_id, o.delivery.subject)] = at
        else:
            retried.append({**row, "b_next": to_us(o.next_at)})
    with conn.begin():
        if retried:
            conn.execute(_RETRIED, retried)
        if finished:
            conn.execute(_FINISHED, finished)
            promotions = [{"p_hook": h, "p_subject": s, "p_at": at} for (h, s), at in freed.items()]
            conn.execute(_PROMOTION, promotions)


def repair(conn: Connection, now: float) -> int:
    """Make the first waiting delivery pending wherever a subject has none pending; how many."""
    d = webhook_deliveries
    p = d.alias("p")
    stuck = (
        select(d.c.webhook_id, d.c.subject)
        .where(d.c.status == WAITING)
        .where(
            ~select(p.c.id)
            .where(
                p.c.webhook_id == d.c.webhook_id,
                p.c.subject == d.c.subject,
                p.c.status == PENDING,
            )
            .exists()
        )
        .distinct()
    )
    with conn.begin():
        found = conn.execute(stuck).all()
        if found:
            at = to_us(now)
            conn.execute(_PROMOTION, [{"p_hook": h, "p_subject": s, "p_at": at} for h, s in found])
    return len(found)


def prune(conn: Connection, before: float, limit: int = PRUNE_ROWS) -> int:
    """Delete up to `limit` deliveries that finished and were made before `before`."""
    d = webhook_deliveries
    cutoff = id_at(before)
    with conn.begin():
        old = (
            select(d.c.id)
            .where(d.c.id < cutoff, d.c.status.in_((DELIVERED, FAILED)))
            .limit(limit)
            .scalar_subquery()
        )
        return int(conn.execute(delete(d).where(d.c.id.in_(old))).rowcount or 0)
