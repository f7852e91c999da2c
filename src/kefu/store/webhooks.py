"""Webhooks and their deliveries, in portable SQLAlchemy Core (both backends run these).

The delivery worker (`server/webhooks/worker.py`, on one node or the
cluster's leader) drives a delivery through these steps, each one
transaction, so everything survives a restart or a new leader:

1. `fan_out`: the oldest outbox rows (`store/outbox.py`) become one delivery
   per event and subscribed webhook, with the JSON body to send, and are
   deleted. A run of messages is expanded into its messages (as stored now: an
   erased account's are erased already).
2. `due`: the pending deliveries whose time has come.
3. `record`: what each attempt got. A delivered one, or one that failed for
   good, makes the next delivery of its subject pending.

**Order.** Deliveries of one webhook and one subject (the user of a
conversation, or an account) go one at a time, in outbox order: the first
is `pending`, the others `waiting` behind it (`seq`). The API shows both as
pending. If two workers ever ran at once (a deposed leader not yet stopped),
a subject could be left with no pending delivery; `repair` finds such
subjects and makes their first one pending (the worker runs it at start and
then every minute).

Delivery ids are made by the worker (`kefu.ids`: time-ordered); a retried
delivery keeps its id and body. Finished deliveries are kept for
`KEEP_FINISHED` and then pruned, their bodies (which may hold message texts)
emptied as soon as they finish.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Concatenate, Literal, ParamSpec, TypeVar

from sqlalchemy import Connection, RowMapping, delete, func, select, update

from kefu.ids import EPOCH_MS, WIDTH
from kefu.store.outbox import (
    MESSAGE_CREATED,
    TRANSFERRED,
    Outbox,
    Subscriptions,
    rfc3339_us,
    subscribed,
)
from kefu.store.tables import (
    conversations,
    from_us,
    messages,
    to_us,
    webhook_deliveries,
    webhook_outbox,
    webhooks,
)

P = ParamSpec("P")
T = TypeVar("T")

PENDING, WAITING, DELIVERED, FAILED = "pending", "waiting", "delivered", "failed"
Status = Literal["pending", "delivered", "failed"]  # as the API shows them
KEEP_FINISHED = 7 * 86400.0  # seconds a delivered or failed delivery stays listed
SEQ_SPAN = 1 << 16  # events one outbox row may hold (a run of messages: a batch at most)
CHUNK = 500  # values per IN (...) list
OUTBOX_ROWS = 64  # outbox rows read per fan-out
ERROR_CHARS = 256


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


# -- webhooks -------------------------------------------------------------------------------
def _webhook(row: RowMapping) -> Webhook:
    return Webhook(
        id=row["id"],
        url=row["url"],
        events=tuple(_names(row["events"])),
        created_at=from_us(row["created_at"]),
        secret=row["secret"],
    )


def _names(events: str) -> list[str]:
    try:
        names = json.loads(events)
    except ValueError:
        return []
    return [n for n in names if isinstance(n, str)] if isinstance(names, list) else []


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
    return [_names(events) for events in conn.execute(select(webhooks.c.events)).scalars()]


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
            last_attempt_at=_seconds(row["last_attempt_at"]),
            next_attempt_at=_seconds(row["next_at"]) if row["status"] == PENDING else None,
            finished_at=_seconds(row["finished_at"]),
        )
        for row in conn.execute(query).mappings()
    ]


def _seconds(us: int | None) -> float | None:
    return None if us is None else from_us(us)


# -- fan-out ---------------------------------------------------------------------------------
@dataclass(slots=True)
class _Event:
    seq: int
    event: str
    subject: str
    created_at: int  # microseconds
    data: dict[str, Any]


def _chunks(values: Sequence[str]) -> Iterable[Sequence[str]]:
    for i in range(0, len(values), CHUNK):
        yield values[i : i + CHUNK]


def _message_events(conn: Connection, row: RowMapping) -> list[_Event]:
    ids = [i for i in (row["ref"] or "").split(",") if i]
    m, c = messages, conversations
    found: dict[str, RowMapping] = {}
    for chunk in _chunks(ids):
        query = (
            select(m, c.c.user_id.label("conversation_user_id"))
            .join(c, c.c.id == m.c.conversation_id)
            .where(m.c.id.in_(chunk))
        )
        found.update((r["id"], r) for r in conn.execute(query).mappings())
    events = []
    for place, mid in enumerate(ids):
        r = found.get(mid)
        if r is None:  # gone since (retention)
            continue
        try:
            payload = json.loads(r["payload"])
        except ValueError:
            payload = None
        data = {
            "id": r["id"],
            "conversation_id": r["conversation_id"],
            "type": r["type"],
            "sender_id": r["sender_id"],
            "receiver_id": r["receiver_id"],
            "payload": payload,
            "created_at": rfc3339_us(r["created_at"]),
        }
        seq = row["seq"] * SEQ_SPAN + place
        events.append(
            _Event(seq, MESSAGE_CREATED, r["conversation_user_id"], r["created_at"], data)
        )
    return events


def _conversations(conn: Connection, ids: set[str]) -> dict[str, RowMapping]:
    c = conversations
    out: dict[str, RowMapping] = {}
    for chunk in _chunks(sorted(ids)):
        query = select(c.c.id, c.c.user_id, c.c.waiter_id).where(c.c.id.in_(chunk))
        out.update((r["id"], r) for r in conn.execute(query).mappings())
    return out


def _expand(conn: Connection, rows: Sequence[RowMapping], wanted: frozenset[str]) -> list[_Event]:
    """The events of `rows` that some webhook wants, in order, with their data complete."""
    needed = {
        r[key]
        for r in rows
        if r["event"] in wanted and r["event"] != MESSAGE_CREATED
        for key in ("conversation_id", "ref")
        if r[key] is not None and (key == "conversation_id" or r["event"] == TRANSFERRED)
    }
    convs = _conversations(conn, needed) if needed else {}
    events: list[_Event] = []
    for r in rows:
        name = r["event"]
        if name not in wanted:
            continue
        if name == MESSAGE_CREATED:
            events += _message_events(conn, r)
            continue
        data: dict[str, Any] = json.loads(r["data"] or "{}")
        subject = r["subject"]
        cid = r["conversation_id"]
        if cid is not None:  # an event of a conversation: ordered by its user
            conv = convs.get(cid)
            subject = conv["user_id"] if conv is not None else subject or cid
            people = {
                "user_id": conv["user_id"] if conv else data.get("user_id"),
                "waiter_id": conv["waiter_id"] if conv else data.get("waiter_id"),
            }
            data = {"conversation_id": cid, **people, **data}
            if name == TRANSFERRED:
                before = convs.get(r["ref"] or "")
                data["from_waiter_id"] = before["waiter_id"] if before else None
        events.append(_Event(r["seq"] * SEQ_SPAN, name, subject or "", r["created_at"], data))
    return events


def _open_subjects(conn: Connection, hook_id: str, subjects: set[str]) -> set[str]:
    """Those of `subjects` that have a delivery to `hook_id` not finished yet."""
    d = webhook_deliveries
    busy: set[str] = set()
    for chunk in _chunks(sorted(subjects)):
        query = select(d.c.subject).distinct()
        query = query.where(
            d.c.webhook_id == hook_id, d.c.subject.in_(chunk), d.c.status.in_((PENDING, WAITING))
        )
        busy.update(conn.execute(query).scalars())
    return busy


def body(delivery_id: str, event: str, created_at_us: int, data: dict[str, Any]) -> str:
    """The JSON a delivery POSTs (and signs)."""
    doc = {"id": delivery_id, "event": event, "created_at": rfc3339_us(created_at_us), "data": data}
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False)


def fan_out(conn: Connection, new_id: Callable[[], str], now: float, max_events: int) -> int:
    """Turn the oldest outbox rows (about `max_events` events) into deliveries; rows taken."""
    o = webhook_outbox
    with conn.begin():
        rows = conn.execute(select(o).order_by(o.c.seq).limit(OUTBOX_ROWS)).mappings().all()
        if not rows:
            return 0
        taken: list[RowMapping] = []
        count = 0
        for r in rows:
            taken.append(r)
            count += (r["ref"] or "").count(",") + 1 if r["event"] == MESSAGE_CREATED else 1
            if count >= max_events:
                break
        hooks = [
            (h, subscribed(_names(e)))
            for h, e in conn.execute(select(webhooks.c.id, webhooks.c.events))
        ]
        wanted = frozenset().union(*(names for _, names in hooks))
        events = _expand(conn, taken, wanted) if wanted else []
        at = to_us(now)
        out: list[dict[str, Any]] = []
        for hook_id, names in hooks:
            mine = [ev for ev in events if ev.event in names]
            if not mine:
                continue
            busy = _open_subjects(conn, hook_id, {ev.subject for ev in mine})
            for ev in mine:
                did = new_id()
                out.append(
                    {
                        "id": did,
                        "webhook_id": hook_id,
                        "seq": ev.seq,
                        "subject": ev.subject,
                        "event": ev.event,
                        "body": body(did, ev.event, ev.created_at, ev.data),
                        "status": WAITING if ev.subject in busy else PENDING,
                        "attempts": 0,
                        "next_at": at,
                        "created_at": at,
                    }
                )
                busy.add(ev.subject)
        if out:
            conn.execute(webhook_deliveries.insert(), out)
        # by their numbers: a row with a lower seq may commit later (PostgreSQL) and
        # must not be deleted unseen
        seqs = [r["seq"] for r in taken]
        for i in range(0, len(seqs), CHUNK):
            conn.execute(delete(o).where(o.c.seq.in_(seqs[i : i + CHUNK])))
        return len(taken)


# -- attempts ----------------------------------------------------------------------------------
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


def _promote(conn: Connection, hook_id: str, subject: str, now_us: int) -> None:
    """Make the first waiting delivery of the subject pending, due now."""
    d = webhook_deliveries
    first = conn.execute(
        select(d.c.id)
        .where(d.c.webhook_id == hook_id, d.c.subject == subject, d.c.status == WAITING)
        .order_by(d.c.seq)
        .limit(1)
    ).scalar()
    if first is not None:
        conn.execute(update(d).where(d.c.id == first).values(status=PENDING, next_at=now_us))


def record(conn: Connection, outcomes: Sequence[Outcome]) -> None:
    """Store what the attempts got, in one transaction; finished ones free their subject."""
    d = webhook_deliveries
    with conn.begin():
        for o in outcomes:
            at = to_us(o.at)
            values: dict[str, Any] = {
                "attempts": d.c.attempts + 1,
                "last_status": o.status,
                "last_error": None if o.error is None else o.error[:ERROR_CHARS],
                "last_attempt_at": at,
            }
            final = o.ok or o.next_at is None
            if final:
                status = DELIVERED if o.ok else FAILED
                values.update(status=status, next_at=None, finished_at=at, body=None)
            else:
                values["next_at"] = to_us(o.next_at or o.at)
            changed = conn.execute(
                update(d).where(d.c.id == o.delivery.id, d.c.status == PENDING).values(values)
            ).rowcount
            if final and changed:
                _promote(conn, o.delivery.webhook_id, o.delivery.subject, at)


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
        for hook_id, subject in found:
            _promote(conn, hook_id, subject, to_us(now))
    return len(found)


def prune(conn: Connection, before: float, limit: int = 1000) -> int:
    """Delete up to `limit` deliveries that finished and were made before `before`."""
    d = webhook_deliveries
    cutoff = str(max(0, int(before * 1000) - EPOCH_MS) << 22).zfill(WIDTH)  # an id of then
    with conn.begin():
        old = (
            select(d.c.id)
            .where(d.c.id < cutoff, d.c.status.in_((DELIVERED, FAILED)))
            .limit(limit)
            .scalar_subquery()
        )
        return int(conn.execute(delete(d).where(d.c.id.in_(old))).rowcount or 0)


def pending_count(conn: Connection) -> int:
    """Deliveries not finished yet, and events not fanned out yet (for tests and status)."""
    d, o = webhook_deliveries, webhook_outbox
    waiting = conn.execute(
        select(func.count()).select_from(d).where(d.c.status.in_((PENDING, WAITING)))
    ).scalar()
    outbox = conn.execute(select(func.count()).select_from(o)).scalar()
    return int(waiting or 0) + int(outbox or 0)


# -- on a store --------------------------------------------------------------------------------
class WebhookQueries:
    """The webhook methods of `SqliteStore` and `PostgresStore` (SQL once, run by `_run`)."""

    async def _run(
        self, fn: Callable[Concatenate[Connection, P], T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        raise NotImplementedError

    @property
    def subscriptions(self) -> Subscriptions:
        """The events this node's writer writes (refreshed by `refresh_subscriptions`)."""
        # both stores' write-path backends keep the `Outbox` their batches go through
        outbox: Outbox = self.backend.outbox  # type: ignore[attr-defined]
        return outbox.subscriptions

    async def refresh_subscriptions(self) -> frozenset[str]:
        """Read the webhooks' events into `subscriptions`; the events now subscribed."""
        self.subscriptions.set(await self._run(subscriptions))
        return self.subscriptions.events

    async def create_webhook(self, hook: Webhook) -> Webhook:
        return await self._run(create_webhook, hook)

    async def get_webhook(self, hook_id: str) -> Webhook | None:
        return await self._run(get_webhook, hook_id)

    async def list_webhooks(self, after: str | None, limit: int) -> list[Webhook]:
        return await self._run(list_webhooks, after, limit)

    async def delete_webhook(self, hook_id: str) -> bool:
        return await self._run(delete_webhook, hook_id)

    async def list_deliveries(
        self, hook_id: str, after: str | None, limit: int, status: Status | None = None
    ) -> list[Delivery]:
        return await self._run(list_deliveries, hook_id, after, limit, status)

    async def fan_out(self, new_id: Callable[[], str], now: float, max_events: int) -> int:
        return await self._run(fan_out, new_id, now, max_events)

    async def due_deliveries(
        self, now: float, limit: int, busy: Sequence[str] = ()
    ) -> list[DueDelivery]:
        return await self._run(due, now, limit, busy)

    async def record_deliveries(self, outcomes: Sequence[Outcome]) -> None:
        await self._run(record, outcomes)

    async def repair_deliveries(self, now: float) -> int:
        return await self._run(repair, now)

    async def prune_deliveries(self, before: float) -> int:
        return await self._run(prune, before)

    async def webhook_backlog(self) -> int:
        return await self._run(pending_count)


__all__ = [
    "Delivery",
    "DueDelivery",
    "Outcome",
    "Webhook",
    "WebhookQueries",
]
