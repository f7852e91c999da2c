"""Fan-out: the outbox's events become one delivery per event and subscribed webhook.

The oldest outbox rows (`store/outbox.py`) are read, a run of messages is
expanded into its messages (as stored now: an erased account's are erased
already), each event gets its JSON body, and the rows are deleted, in one
transaction. A long run is taken in parts; what is left of it keeps its
row and its place in the order. A delivery whose subject already has one
under way is `waiting` behind it (`attempts.py` makes it pending in turn).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, RowMapping, delete, func, select, update

from kefu.ids import WIDTH
from kefu.store.outbox import MESSAGE_CREATED, TRANSFERRED, event_names, rfc3339_us, subscribed
from kefu.store.tables import (
    conversations,
    messages,
    to_us,
    webhook_deliveries,
    webhook_outbox,
    webhooks,
)
from kefu.store.webhooks.model import (
    CHUNK,
    OUTBOX_ROWS,
    PENDING,
    SEQ_SPAN,
    WAITING,
    Steps,
)


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


def fan_out_steps(
    conn: Connection, new_id: Callable[[], str], now: float, max_events: int
) -> Steps[int]:
    """Turn the oldest outbox events (`max_events` or so) into deliveries; how many were taken.

    A long run of messages is taken in parts: what is left of it stays in its row,
    which keeps its place in the order. In steps: it yields between its reads, none of
    which takes a lock on SQLite (the transaction begins at the first write), and
    writes at the end (`WebhookQueries.fan_out` runs them)."""
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
            (h, subscribed(event_names(e)))
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
