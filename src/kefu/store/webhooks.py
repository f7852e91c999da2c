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

import asyncio
import json
import sqlite3
from collections.abc import Callable, Generator, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Concatenate, Literal, ParamSpec, TypeAlias, TypeVar

from sqlalchemy import (
    Connection,
    Engine,
    RowMapping,
    bindparam,
    create_engine,
    delete,
    event,
    func,
    select,
    update,
)
from sqlalchemy.engine import URL
from sqlalchemy.exc import SQLAlchemyError

from kefu.ids import EPOCH_MS, WIDTH
from kefu.store.base import StoreUnavailable
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
Steps: TypeAlias = Generator[None, None, T]  # work that yields where it may be paused


def drain(steps: Steps[T]) -> T:
    """Run `steps` to the end, without pausing; its result."""
    while True:
        try:
            next(steps)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]


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


def _run_ids(ref: str | None) -> tuple[int, list[str]]:
    """A run's (place of its first id, ids): `ref` is "id,id,..." or, once a part of it
    was fanned out, "+place,id,id,..."."""
    ids = [i for i in (ref or "").split(",") if i]
    if ids and ids[0].startswith("+"):
        return int(ids[0][1:]), ids[1:]
    return 0, ids


def _message_events(conn: Connection, seq: int, first: int, ids: list[str]) -> list[_Event]:
    """The events of the messages `ids` of outbox row `seq`, the first at place `first`."""
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
    for place, mid in enumerate(ids, first):
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
        at = seq * SEQ_SPAN + place
        events.append(_Event(at, MESSAGE_CREATED, r["conversation_user_id"], r["created_at"], data))
    return events


def _conversations(conn: Connection, ids: set[str]) -> dict[str, RowMapping]:
    c = conversations
    out: dict[str, RowMapping] = {}
    for chunk in _chunks(sorted(ids)):
        query = select(c.c.id, c.c.user_id, c.c.waiter_id).where(c.c.id.in_(chunk))
        out.update((r["id"], r) for r in conn.execute(query).mappings())
    return out


def _expand(
    conn: Connection,
    rows: Sequence[RowMapping],
    wanted: frozenset[str],
    runs: dict[int, tuple[int, list[str]]],
) -> Steps[list[_Event]]:
    """The events of `rows` that some webhook wants, in order, with their data complete.

    `runs` gives the messages of each message row to take (by seq): its first place, ids.
    """
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
            yield
            first, ids = runs[r["seq"]]
            events += _message_events(conn, r["seq"], first, ids)
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
    """Turn the oldest outbox events (`max_events` or so) into deliveries; how many were taken.

    A long run of messages is taken in parts: what is left of it stays in its row,
    which keeps its place in the order.
    """
    return drain(fan_out_steps(conn, new_id, now, max_events))


def fan_out_steps(
    conn: Connection, new_id: Callable[[], str], now: float, max_events: int
) -> Steps[int]:
    """`fan_out` in steps: it yields between its reads, none of which takes a lock on
    SQLite (the transaction begins at the first write), and writes at the end."""
    o = webhook_outbox
    with conn.begin():
        heads = conn.execute(
            select(o.c.seq, o.c.event, func.length(o.c.ref)).order_by(o.c.seq).limit(OUTBOX_ROWS)
        ).all()
        if not heads:
            return 0
        pick: list[int] = []
        count = 0
        for seq, event, length in heads:  # a run of n messages: about n * 21 characters
            pick.append(seq)
            count += max(1, (length or 0) // (WIDTH + 1)) if event == MESSAGE_CREATED else 1
            if count >= max_events:
                break
        yield
        rows = conn.execute(select(o).where(o.c.seq.in_(pick)).order_by(o.c.seq)).mappings().all()
        runs: dict[int, tuple[int, list[str]]] = {}
        left: tuple[int, str] | None = None  # (seq, ref) of a run taken in part
        room = max_events
        taken: list[int] = []
        for r in rows:
            if room <= 0:
                break
            if r["event"] == MESSAGE_CREATED:
                first, ids = _run_ids(r["ref"])
                if len(ids) > room:
                    rest = ids[room:]
                    left = (r["seq"], ",".join([f"+{first + room}", *rest]))
                    ids = ids[:room]
                runs[r["seq"]] = (first, ids)
                room -= len(ids)
            else:
                room -= 1
            taken.append(r["seq"])
        rows = [r for r in rows if r["seq"] in set(taken)]
        hooks = [
            (h, subscribed(_names(e)))
            for h, e in conn.execute(select(webhooks.c.id, webhooks.c.events))
        ]
        wanted = frozenset().union(*(names for _, names in hooks))
        events = (yield from _expand(conn, rows, wanted, runs)) if wanted else []
        at = to_us(now)
        out: list[dict[str, Any]] = []
        for hook_id, names in hooks:
            mine = [ev for ev in events if ev.event in names]
            if not mine:
                continue
            yield
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
        done = [seq for seq in taken if left is None or seq != left[0]]
        for i in range(0, len(done), CHUNK):
            conn.execute(delete(o).where(o.c.seq.in_(done[i : i + CHUNK])))
        if left is not None:
            conn.execute(update(o).where(o.c.seq == left[0]).values(ref=left[1]))
        return max_events - room


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
    """The webhook methods of `SqliteStore` and `PostgresStore` (SQL once).

    The API's calls run as the store's other cold calls (`_run`). The delivery
    worker's (`fan_out` to `prune_deliveries`) run where they cost the chat
    least (`_worker_run`): on PostgreSQL as the others (on the event loop, in
    asyncpg's greenlet); on SQLite on the event loop too, on a connection of
    their own that never waits for the write lock (busy_timeout 0) and commits
    as the writer does (synchronous=NORMAL), when the store's writer runs there
    too: a worker thread would hold the GIL against the loop (see
    `sqlite/on_loop.py`), and the loop's own writer is never mid-transaction
    when the worker runs. A locked database fails the step with
    `StoreUnavailable`; the worker tries again later. With synchronous=FULL
    (a commit waits for the disk) they run in a thread, as the writer does.
    """

    _worker_engine: Engine | None = None

    async def _run(
        self, fn: Callable[Concatenate[Connection, P], T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        raise NotImplementedError

    @property
    def _backend(self) -> Any:
        return self.backend  # type: ignore[attr-defined]  # both stores have one

    @property
    def subscriptions(self) -> Subscriptions:
        """The events this node's writer writes (refreshed by `refresh_subscriptions`)."""
        outbox: Outbox = self._backend.outbox  # the batches' outbox (`outbox.py`)
        return outbox.subscriptions

    def _loop_engine(self) -> Engine | None:
        """The worker's own connection, if its steps run on the loop (see the class)."""
        backend = self._backend
        path = getattr(backend, "path", None)  # a SQLite file (PostgreSQL's backend has none)
        if not isinstance(path, str) or getattr(backend, "synchronous", "") != "NORMAL":
            return None
        if self._worker_engine is None:
            engine = create_engine(URL.create("sqlite", database=path), hide_parameters=True)
            event.listen(engine, "connect", _never_wait)
            self._worker_engine = engine
        return self._worker_engine

    async def _worker_run(
        self,
        fn: Callable[Concatenate[Connection, P], Steps[T]],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        """Run the worker's `fn`; on the loop, the loop runs other work at each of its steps."""
        engine = self._loop_engine()
        if engine is None:

            def whole(conn: Connection) -> T:
                return drain(fn(conn, *args, **kwargs))

            return await self._run(whole)
        try:
            with engine.connect() as conn:
                steps = fn(conn, *args, **kwargs)
                while True:
                    try:
                        next(steps)
                    except StopIteration as stop:
                        result: T = stop.value
                        return result
                    await asyncio.sleep(0)
        except (sqlite3.Error, SQLAlchemyError, OSError) as exc:
            raise StoreUnavailable(f"{type(exc).__name__}: {exc}") from exc

    def close_worker(self) -> None:
        """Close the delivery worker's connection (the worker has stopped)."""
        engine, self._worker_engine = self._worker_engine, None
        if engine is not None:
            engine.dispose()

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
        return await self._worker_run(fan_out_steps, new_id, now, max_events)

    async def due_deliveries(
        self, now: float, limit: int, busy: Sequence[str] = ()
    ) -> list[DueDelivery]:
        return await self._worker_run(_one_step(due), now, limit, busy)

    async def record_deliveries(self, outcomes: Sequence[Outcome]) -> None:
        await self._worker_run(_one_step(record), outcomes)

    async def repair_deliveries(self, now: float) -> int:
        return await self._worker_run(_one_step(repair), now)

    async def prune_deliveries(self, before: float, limit: int = PRUNE_ROWS) -> int:
        return await self._worker_run(_one_step(prune), before, limit)

    async def webhook_backlog(self) -> int:
        return await self._run(pending_count)


def _one_step(
    fn: Callable[Concatenate[Connection, P], T],
) -> Callable[Concatenate[Connection, P], Steps[T]]:
    """`fn` (short: one or two statements) as steps, of one step."""

    def steps(conn: Connection, /, *args: P.args, **kwargs: P.kwargs) -> Steps[T]:
        return fn(conn, *args, **kwargs)
        yield  # a generator, that never pauses

    return steps


def _never_wait(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.execute("PRAGMA busy_timeout=0")
    dbapi_connection.execute("PRAGMA synchronous=NORMAL")  # as the writer's: no fsync per commit
    dbapi_connection.execute("PRAGMA wal_autocheckpoint=0")  # the store's checkpointer does them
    dbapi_connection.execute("PRAGMA foreign_keys=ON")


__all__ = [
    "Delivery",
    "DueDelivery",
    "Outcome",
    "Webhook",
    "WebhookQueries",
]
