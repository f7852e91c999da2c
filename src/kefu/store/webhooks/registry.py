"""The webhooks themselves, and their deliveries as the API lists them."""

from __future__ import annotations

import json

from sqlalchemy import Connection, RowMapping, delete, select

from kefu.store.outbox import event_names
from kefu.store.tables import from_us, from_us_or_none, to_us, webhook_deliveries, webhooks
from kefu.store.webhooks.model import (
    DELIVERED,
    FAILED,
    PENDING,
    WAITING,
    Delivery,
    Status,
    Webhook,
)


def _webhook(row: RowMapping) -> Webhook:
    return Webhook(
        id=row["id"],
        url=row["url"],
        events=tuple(event_names(row["events"])),
        created_at=from_us(row["created_at"]),
        secret=row["secret"],
    )


def create_webhook(conn: Connection, hook: Webhook) -> Webhook:
    values = {
        "id": hook.id,
        "url": hook.url,
        "events": json.dumps(list(hook.events)),
        "secret": hook.secret,
        "created_at": to_us(hook.created_at),
    }
    with conn.begin():
        conn.execute(webhooks.insert().values(values))
    return hook


def get_webhook(conn: Connection, hook_id: str) -> Webhook | None:
    row = conn.execute(select(webhooks).where(webhooks.c.id == hook_id)).mappings().first()
    return None if row is None else _webhook(row)


def list_webhooks(conn: Connection, after: str | None, limit: int) -> list[Webhook]:
    """Newest first (ids are time-ordered); those after the webhook `after` (an id)."""
    query = select(webhooks).order_by(webhooks.c.id.desc()).limit(max(1, limit))
    if after is not None:
        query = query.where(webhooks.c.id < after)
    return [_webhook(row) for row in conn.execute(query).mappings()]


def delete_webhook(conn: Connection, hook_id: str) -> bool:
    """Delete the webhook and its deliveries; False if there was none."""
    with conn.begin():
        conn.execute(delete(webhook_deliveries).where(webhook_deliveries.c.webhook_id == hook_id))
        return bool(conn.execute(delete(webhooks).where(webhooks.c.id == hook_id)).rowcount)


def subscriptions(conn: Connection) -> list[list[str]]:
    """The `events` of every webhook (what `Subscriptions.set` takes)."""
    return [event_names(events) for events in conn.execute(select(webhooks.c.events)).scalars()]


def _shown(status: str) -> Status:
    if status == DELIVERED:
        return "delivered"
    return "failed" if status == FAILED else "pending"


def list_deliveries(
    conn: Connection, hook_id: str, after: str | None, limit: int, status: Status | None
) -> list[Delivery]:
    """The webhook's deliveries newest first, after the delivery `after` (an id)."""
    d = webhook_deliveries
    query = select(d).where(d.c.webhook_id == hook_id)
    if after is not None:
        query = query.where(d.c.id < after)
    if status == "pending":
        query = query.where(d.c.status.in_((PENDING, WAITING)))
    elif status is not None:
        query = query.where(d.c.status == status)
    query = query.order_by(d.c.id.desc()).limit(max(1, limit))
    return [
        Delivery(
            id=row["id"],
            webhook_id=row["webhook_id"],
            event=row["event"],
            status=_shown(row["status"]),
            attempts=row["attempts"],
            last_status=row["last_status"],
            last_error=row["last_error"],
            created_at=from_us(row["created_at"]),
            last_attempt_at=from_us_or_none(row["last_attempt_at"]),
            next_attempt_at=from_us_or_none(row["next_at"]) if row["status"] == PENDING else None,
            finished_at=from_us_or_none(row["finished_at"]),
        )
        for row in conn.execute(query).mappings()
    ]
