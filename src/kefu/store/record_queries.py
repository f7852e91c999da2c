"""The SQL of the admin side's reads and of retention, in portable SQLAlchemy Core.

Like `queries.py`, every function takes a synchronous `Connection` (SQLite
runs them in a worker thread, PostgreSQL through `run_sync`) and returns the
dataclasses of `records.py`. None of this is on the message path.

Orders and indexes:

* conversations newest first by (opened_at, id): `ix_conversations_opened_at_id`,
  or the user's / waiter's (…, opened_at) index when filtered by one;
* queue entries in queue order (queued_at, seq): `ix_queue_entries_queued_at_seq`;
* a conversation's messages by id (time order): `ix_messages_conversation_id_id`;
* departures from the queue by `left_at`: `ix_queue_exits_left_at`;
* purges take the oldest closed conversations first: `ix_conversations_closed_at`.

Limits: pages are clamped to 1..`MAX_PAGE` rows. `period_stats` reads no
rows into Python: counts, sums and percentiles are computed by the database,
so a period may be as long as the caller likes. A purge batch deletes at most
`conversations` conversations and `messages` messages in one transaction.
"""

from __future__ import annotations

import json
import math
from typing import Any

from sqlalchemy import Connection, Select, Subquery, and_, func, or_, select, true
from sqlalchemy.engine import RowMapping

from kefu.store.queries import MAX_LIMIT, clamp_limit, profile_columns, profile_of
from kefu.store.records import (
    ConversationFilter,
    ConversationRecord,
    ConversationState,
    MessageRecord,
    PeriodStats,
    Purged,
    QueuedRecord,
    Spread,
)
from kefu.store.tables import (
    accounts,
    conversations,
    from_us,
    from_us_or_none,
    messages,
    queue_entries,
    queue_exits,
    to_us,
)

MAX_PAGE = MAX_LIMIT


# -- conversations ---------------------------------------------------------------------
def _conversations_query(extra: list[Any] | None = None) -> Select[Any]:
    c = conversations
    u, w = accounts.alias("u"), accounts.alias("w")
    people = [*profile_columns(u, "u"), *profile_columns(w, "w")]
    return select(c, *people, *(extra or [])).select_from(
        c.outerjoin(u, u.c.id == c.c.user_id).outerjoin(w, w.c.id == c.c.waiter_id)
    )


def _conversation(row: RowMapping, count: int | None = None) -> ConversationRecord:
    return ConversationRecord(
        id=row["id"],
        user=profile_of(row, "u", row["user_id"]),
        waiter=profile_of(row, "w", row["waiter_id"]),
        opened_at=from_us(row["opened_at"]),
        queued_at=from_us_or_none(row["queued_at"]),
        closed_at=from_us_or_none(row["closed_at"]),
        close_reason=row["close_reason"],
        rate=row["rate"],
        messages=count,
    )


def list_conversations(
    conn: Connection,
    where: ConversationFilter,
    after: tuple[int, str] | None,
    limit: int,
    *,
    oldest_first: bool = False,
) -> list[ConversationRecord]:
    """Conversations by (opened_at, id), newest first unless `oldest_first`.

    `after` is the (opened_at in microseconds, id) of the last one shown.
    `where.state` queued matches none (queued users are `list_queued`).
    """
    if where.state == ConversationState.QUEUED:
        return []  # a queued user has no conversation yet
    c = conversations
    query = _conversations_query()
    if where.state is not None:
        still_open = c.c.closed_at.is_(None)
        closed = where.state == ConversationState.CLOSED
        query = query.where(~still_open if closed else still_open)
    if where.user_id is not None:
        query = query.where(c.c.user_id == where.user_id)
    if where.waiter_id is not None:
        query = query.where(c.c.waiter_id == where.waiter_id)
    if where.since is not None:
        query = query.where(c.c.opened_at >= to_us(where.since))
    if where.until is not None:
        query = query.where(c.c.opened_at < to_us(where.until))
    if after is not None:
        at, cid = after
        if oldest_first:
            query = query.where(or_(c.c.opened_at > at, and_(c.c.opened_at == at, c.c.id > cid)))
        else:
            query = query.where(or_(c.c.opened_at < at, and_(c.c.opened_at == at, c.c.id < cid)))
    order = (c.c.opened_at, c.c.id) if oldest_first else (c.c.opened_at.desc(), c.c.id.desc())
    query = query.order_by(*order).limit(clamp_limit(limit))
    return [_conversation(row) for row in conn.execute(query).mappings()]


def get_conversation(conn: Connection, conversation_id: str) -> ConversationRecord | None:
    """One conversation with its message count; None if there is none with that id."""
    count = (
        select(func.count())
        .select_from(messages)
        .where(messages.c.conversation_id == conversations.c.id)
        .scalar_subquery()
        .label("message_count")
    )
    query = _conversations_query([count]).where(conversations.c.id == conversation_id)
    row = conn.execute(query).mappings().first()
    return None if row is None else _conversation(row, int(row["message_count"]))


def list_queued(
    conn: Connection, where: ConversationFilter, after: tuple[int, int] | None, limit: int
) -> list[QueuedRecord]:
    """Queue entries in queue order, after (queued_at in microseconds, seq) if given.

    `where.since` / `until` bound the arrival; a `waiter_id` matches none (a
    queued user has no waiter yet).
    """
    if where.waiter_id is not None:
        return []
    q = queue_entries
    u = accounts.alias("u")
    query = select(q, *profile_columns(u, "u")).select_from(q.outerjoin(u, u.c.id == q.c.user_id))
    if where.user_id is not None:
        query = query.where(q.c.user_id == where.user_id)
    if where.since is not None:
        query = query.where(q.c.queued_at >= to_us(where.since))
    if where.until is not None:
        query = query.where(q.c.queued_at < to_us(where.until))
    if after is not None:
        at, seq = after
        query = query.where(or_(q.c.queued_at > at, and_(q.c.queued_at == at, q.c.seq > seq)))
    query = query.order_by(q.c.queued_at, q.c.seq).limit(clamp_limit(limit))
    return [
        QueuedRecord(profile_of(row, "u", row["user_id"]), from_us(row["queued_at"]), row["seq"])
        for row in conn.execute(query).mappings()
    ]


def conversation_messages(
    conn: Connection, conversation_id: str, after: str | None, limit: int
) -> list[MessageRecord]:
    """A conversation's messages in order (by id), those after the id `after`."""
    m = messages
    s = accounts.alias("s")
    query = (
        select(m, *profile_columns(s, "s"))
        .select_from(m.outerjoin(s, s.c.id == m.c.sender_id))
        .where(m.c.conversation_id == conversation_id)
    )
    if after is not None:
        query = query.where(m.c.id > after)
    query = query.order_by(m.c.id).limit(clamp_limit(limit))
    return [
        MessageRecord(
            id=row["id"],
            conversation_id=row["conversation_id"],
            type=row["type"],
            sender=profile_of(row, "s", row["sender_id"]),
            receiver_id=row["receiver_id"],
            payload=json.loads(row["payload"]),
            created=from_us(row["created_at"]),
        )
        for row in conn.execute(query).mappings()
    ]


# -- statistics --------------------------------------------------------------------------
def nearest_rank(count: int, p: float) -> int:
    """The 1-based rank of the nearest-rank percentile `p` of `count` sorted values: the
    smallest value with p% of them at or below it."""
    return max(1, math.ceil(p / 100 * count))


def _spread(conn: Connection, durations: Subquery) -> Spread:
    """Count, mean, p50 and p90 of the column `us` (microseconds; NULLs skipped) of
    `durations`, computed by the database."""
    us = durations.c.us
    count, total = conn.execute(select(func.count(us), func.sum(us))).one()
    if not count:
        return Spread()

    def at(p: float) -> float:
        query = select(us).where(us.is_not(None)).order_by(us)
        return from_us(conn.execute(query.offset(nearest_rank(count, p) - 1).limit(1)).scalar_one())

    return Spread(int(count), from_us(total) / count, at(50), at(90))


def period_stats(conn: Connection, since: float, until: float) -> PeriodStats:
    """How the desk did in [since, until).

    Conversations opened in the range: their count and ratings (by stars),
    their handling times (closed ones: closed - opened) and times to first
    reply (the waiter's first message - opened, for those it wrote in).
    Departures from the queue in the range: served or left, and the waits
    of those served (left - queued: from the user's arrival, which a user
    sent back to the queue keeps).
    """
    c, m, x = conversations, messages, queue_exits
    lo, hi = to_us(since), to_us(until)
    opened = and_(c.c.opened_at >= lo, c.c.opened_at < hi)
    ratings: dict[int, int] = {}
    total = 0
    for rate, n in conn.execute(select(c.c.rate, func.count()).where(opened).group_by(c.c.rate)):
        total += n
        if rate is not None:
            ratings[int(rate)] = int(n)
    handling = select((c.c.closed_at - c.c.opened_at).label("us"))
    handling = handling.where(opened, c.c.closed_at.is_not(None))
    first = (
        select(func.min(m.c.created_at))
        .where(m.c.conversation_id == c.c.id, m.c.sender_id == c.c.waiter_id)
        .scalar_subquery()
    )
    replies = select((first - c.c.opened_at).label("us")).where(opened)
    left_in = and_(x.c.left_at >= lo, x.c.left_at < hi)
    served = left = 0
    for was_served, n in conn.execute(
        select(x.c.served, func.count()).where(left_in).group_by(x.c.served)
    ):
        if was_served:
            served += int(n)
        else:
            left += int(n)
    waits = select((x.c.left_at - x.c.queued_at).label("us")).where(left_in, x.c.served == true())
    return PeriodStats(
        conversations=total,
        served=served,
        left=left,
        waits=_spread(conn, waits.subquery()),
        first_replies=_spread(conn, replies.subquery()),
        handling=_spread(conn, handling.subquery()),
        ratings=ratings,
    )


# -- retention -------------------------------------------------------------------------------
def purge_batch(
    conn: Connection, before: float, *, conversations_max: int = 500, messages_max: int = 5000
) -> Purged:
    """Delete one batch of what retention drops; commits. `Purged()` when nothing is left.

    The oldest closed conversations closed before `before` (at most
    `conversations_max`) lose their messages, at most `messages_max` of them
    in this transaction; once they have none left, the conversations go.
    When no such conversation is left, departures from the queue older than
    `before` go, about `messages_max` of them (all those at the last
    `left_at` taken). Each call is one short transaction, so the chat's
    writer never waits long for the database.
    """
    c, m, x = conversations, messages, queue_exits
    cutoff = to_us(before)
    with conn.begin():
        ids = list(
            conn.execute(
                select(c.c.id)
                .where(c.c.closed_at < cutoff)
                .order_by(c.c.closed_at)
                .limit(max(1, conversations_max))
            ).scalars()
        )
        if ids:
            doomed = select(m.c.id).where(m.c.conversation_id.in_(ids)).limit(max(1, messages_max))
            gone = conn.execute(m.delete().where(m.c.id.in_(doomed.scalar_subquery()))).rowcount
            if gone >= messages_max:  # maybe more: the conversations go in a later batch
                return Purged(messages=gone)
            dropped = conn.execute(c.delete().where(c.c.id.in_(ids))).rowcount
            return Purged(conversations=dropped, messages=gone)
        last = conn.execute(
            select(x.c.left_at)
            .where(x.c.left_at < cutoff)
            .order_by(x.c.left_at)
            .offset(max(1, messages_max) - 1)
            .limit(1)
        ).scalar()
        bound = x.c.left_at < cutoff if last is None else x.c.left_at <= last
        return Purged(queue_exits=conn.execute(x.delete().where(bound)).rowcount)


__all__ = [
    "MAX_PAGE",
    "conversation_messages",
    "get_conversation",
    "list_conversations",
    "list_queued",
    "period_stats",
    "purge_batch",
]
