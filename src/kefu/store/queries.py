"""Cold reads and account writes in portable SQLAlchemy Core.

Every function takes a synchronous `Connection` and returns the dataclasses of
`base.py`. SQLite runs them in a worker thread; an asyncpg store can run the
same functions with `AsyncConnection.run_sync`. Nothing here is on the message
hot path, which goes through the group-commit writer instead.

Limits: `history` and `sessions` clamp `limit` to 1..`MAX_LIMIT` (1000);
`messages_after` takes any `limit` of at least 1. Profiles of
accounts that do not exist (messages have no foreign key on sender and
receiver) come back as `Profile(id, username=id)`.
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import Connection, FromClause, Select, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import RowMapping
from sqlalchemy.exc import IntegrityError

from kefu.core.model import AccountKind, Profile, Role
from kefu.store.base import (
    Account,
    AccountExists,
    Conversation,
    HistoryEntry,
    OpenState,
    QueueEntry,
    SessionEntry,
    StoredMessage,
)
from kefu.store.tables import (
    accounts,
    conversations,
    from_us,
    messages,
    queue_entries,
    to_us,
)

MAX_LIMIT = 1000
_PROFILE_COLS = ("id", "username", "nickname", "avatar")


def _clamp(limit: int) -> int:
    return max(1, min(limit, MAX_LIMIT))


def _profile_cols(alias: FromClause, prefix: str) -> list[Any]:
    return [alias.c[name].label(f"{prefix}_{name}") for name in _PROFILE_COLS]


def _profile(row: RowMapping, prefix: str, fallback_id: str) -> Profile:
    if row[f"{prefix}_id"] is None:
        return Profile(id=fallback_id, username=fallback_id)
    return Profile(
        id=row[f"{prefix}_id"],
        username=row[f"{prefix}_username"],
        nickname=row[f"{prefix}_nickname"],
        avatar=row[f"{prefix}_avatar"] or "",
    )


def _account(row: RowMapping | None) -> Account | None:
    if row is None:
        return None
    return Account(
        id=row["id"],
        username=row["username"],
        role=Role(row["role"]),
        nickname=row["nickname"],
        avatar=row["avatar"] or "",
        password_hash=row["password_hash"],
        kind=AccountKind(row["kind"]),
        external_id=row["external_id"],
    )


def _conversation(row: RowMapping, prefix: str = "c_") -> Conversation:
    closed = row[f"{prefix}closed_at"]
    queued = row[f"{prefix}queued_at"]
    return Conversation(
        id=row[f"{prefix}id"],
        user_id=row[f"{prefix}user_id"],
        waiter_id=row[f"{prefix}waiter_id"],
        opened=from_us(row[f"{prefix}opened_at"]),
        closed=None if closed is None else from_us(closed),
        close_reason=row[f"{prefix}close_reason"],
        rate=row[f"{prefix}rate"],
        queued=None if queued is None else from_us(queued),
    )


def _conversation_cols() -> list[Any]:
    return [col.label(f"c_{col.name}") for col in conversations.c]


# -- accounts -------------------------------------------------------------
def get_account(conn: Connection, account_id: str) -> Account | None:
    row = conn.execute(select(accounts).where(accounts.c.id == account_id)).mappings().first()
    return _account(row)


def get_account_by_username(
    conn: Connection, username: str, kind: AccountKind = AccountKind.LOCAL
) -> Account | None:
    query = select(accounts).where(accounts.c.username == username, accounts.c.kind == kind.value)
    return _account(conn.execute(query).mappings().first())


def get_external_account(conn: Connection, external_id: str) -> Account | None:
    query = select(accounts).where(
        accounts.c.external_id == external_id, accounts.c.kind == AccountKind.EXTERNAL.value
    )
    return _account(conn.execute(query).mappings().first())


def _values(account: Account, now: float) -> dict[str, Any]:
    return {
        "id": account.id,
        "username": account.username,
        "role": account.role.value,
        "nickname": account.nickname,
        "avatar": account.avatar,
        "password_hash": account.password_hash,
        "created_at": to_us(now),
        "kind": account.kind.value,
        "external_id": account.external_id,
    }


def create_account(conn: Connection, account: Account, now: float) -> Account:
    """Insert; `AccountExists` if the id or the username (in its kind) is taken. Commits."""
    try:
        with conn.begin():
            conn.execute(accounts.insert().values(_values(account, now)))
    except IntegrityError as exc:
        raise AccountExists(f"account {account.id!r} / {account.username!r} exists") from exc
    return account


def upsert_account(conn: Connection, account: Account, now: float) -> None:
    """Insert or update an external account by `external_id`. Commits.

    `AccountExists` if the id or the username belongs to another account.
    """
    if account.kind is not AccountKind.EXTERNAL or account.external_id is None:
        raise ValueError("only external accounts are upserted (from host tokens)")
    insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    stmt = insert(accounts).values(_values(account, now))
    stmt = stmt.on_conflict_do_update(
        index_elements=[accounts.c.external_id],
        set_={
            "username": stmt.excluded.username,
            "role": stmt.excluded.role,
            "nickname": stmt.excluded.nickname,
            "avatar": stmt.excluded.avatar,
        },
    )
    try:
        with conn.begin():
            conn.execute(stmt)
    except IntegrityError as exc:
        raise AccountExists(f"account {account.id!r} / {account.username!r} is taken") from exc


# -- messages -------------------------------------------------------------
def _entries(conn: Connection, query: Select[Any]) -> list[HistoryEntry]:
    """Run a query over a `messages` subquery `m`, adding both profiles."""
    m = query.subquery("m")
    s = accounts.alias("s")
    r = accounts.alias("r")
    full = (
        select(m, *_profile_cols(s, "s"), *_profile_cols(r, "r"))
        .select_from(
            m.outerjoin(s, s.c.id == m.c.sender_id).outerjoin(r, r.c.id == m.c.receiver_id)
        )
        .order_by(m.c.id.desc())
    )
    return [_history_entry(row) for row in conn.execute(full).mappings()]


def _history_entry(row: RowMapping, prefix: str = "") -> HistoryEntry:
    return HistoryEntry(
        id=row[f"{prefix}id"],
        type=row[f"{prefix}type"],
        sender=_profile(row, "s", row[f"{prefix}sender_id"]),
        receiver=_profile(row, "r", row[f"{prefix}receiver_id"]),
        payload=json.loads(row[f"{prefix}payload"]),
        created=from_us(row[f"{prefix}created_at"]),
    )


def history(conn: Connection, user_id: str, before: str | None, limit: int) -> list[HistoryEntry]:
    """The user's messages, newest first, ids below `before`.

    Those are the messages of the conversations whose user is `user_id`, both
    ways (an account that is only ever the waiter of its conversations has
    none). SQLite takes the conversations from (user_id, opened_at) and their
    message ids from (conversation_id, id) without reading the rows, and reads
    only the newest `limit` rows: cost grows with the number of the user's
    messages below `before` (index entries), not with the table. PostgreSQL
    picks its plan by its statistics (for a user with many recent messages,
    walking the newest ids and keeping the user's).
    """
    limit = _clamp(limit)
    c = conversations
    theirs = select(c.c.id).where(c.c.user_id == user_id)
    ids = select(messages.c.id).where(messages.c.conversation_id.in_(theirs))
    if before is not None:
        ids = ids.where(messages.c.id < before)
    newest = ids.order_by(messages.c.id.desc()).limit(limit)
    return _entries(conn, select(messages).where(messages.c.id.in_(newest)))


def messages_after(
    conn: Connection, conversation_id: str, after_id: str, limit: int
) -> list[StoredMessage]:
    query = (
        select(messages)
        .where(messages.c.conversation_id == conversation_id, messages.c.id > after_id)
        .order_by(messages.c.id)
        .limit(max(1, limit))
    )
    return [
        StoredMessage(
            id=row["id"],
            conversation_id=row["conversation_id"],
            type=row["type"],
            sender_id=row["sender_id"],
            receiver_id=row["receiver_id"],
            payload=json.loads(row["payload"]),
            op_id=row["op_id"],
            created=from_us(row["created_at"]),
        )
        for row in conn.execute(query).mappings()
    ]


# -- conversations --------------------------------------------------------
def latest_conversation(conn: Connection, user_id: str) -> Conversation | None:
    query = (
        select(*_conversation_cols())
        .where(conversations.c.user_id == user_id)
        .order_by(conversations.c.opened_at.desc(), conversations.c.id.desc())
        .limit(1)
    )
    row = conn.execute(query).mappings().first()
    return None if row is None else _conversation(row)


def sessions(conn: Connection, waiter_id: str, limit: int) -> list[SessionEntry]:
    """The waiter's latest conversation with each user, newest (by opening) first.

    `SessionEntry.created` is when that conversation opened; `latest` is its
    last message, if any.
    """
    c = conversations
    rank = func.row_number().over(
        partition_by=c.c.user_id, order_by=(c.c.opened_at.desc(), c.c.id.desc())
    )
    ranked = (
        select(c.c.id, c.c.user_id, c.c.opened_at, rank.label("rn"))
        .where(c.c.waiter_id == waiter_id)
        .subquery("ranked")
    )
    top = (
        select(ranked.c.id, ranked.c.user_id, ranked.c.opened_at)
        .where(ranked.c.rn == 1)
        .order_by(ranked.c.opened_at.desc(), ranked.c.id.desc())
        .limit(_clamp(limit))
        .subquery("top")
    )
    m, u, s, r = messages.alias("m"), accounts.alias("u"), accounts.alias("s"), accounts.alias("r")
    last_id = (
        select(func.max(messages.c.id))
        .where(messages.c.conversation_id == top.c.id)
        .scalar_subquery()
    )
    query = (
        select(
            top.c.id.label("cid"),
            top.c.user_id.label("uid"),
            top.c.opened_at,
            *_profile_cols(u, "u"),
            *[col.label(f"m_{col.name}") for col in m.c],
            *_profile_cols(s, "s"),
            *_profile_cols(r, "r"),
        )
        .select_from(
            top.outerjoin(u, u.c.id == top.c.user_id)
            .outerjoin(m, m.c.id == last_id)
            .outerjoin(s, s.c.id == m.c.sender_id)
            .outerjoin(r, r.c.id == m.c.receiver_id)
        )
        .order_by(top.c.opened_at.desc(), top.c.id.desc())
    )
    rows = conn.execute(query).mappings().all()
    if not rows:
        return []
    waiter = get_account(conn, waiter_id)
    waiter_profile = waiter.profile() if waiter else Profile(id=waiter_id, username=waiter_id)
    return [
        SessionEntry(
            conversation_id=row["cid"],
            user=_profile(row, "u", row["uid"]),
            waiter=waiter_profile,
            latest=None if row["m_id"] is None else _history_entry(row, "m_"),
            created=from_us(row["opened_at"]),
        )
        for row in rows
    ]


def load_open_state(conn: Connection) -> OpenState:
    """The queue in order (queued_at, then insertion) and every open conversation."""
    q = queue_entries
    u = accounts.alias("u")
    rows = conn.execute(
        select(q.c.user_id, q.c.queued_at, *_profile_cols(u, "u"))
        .select_from(q.outerjoin(u, u.c.id == q.c.user_id))
        .order_by(q.c.queued_at, q.c.seq)
    ).mappings()
    queue = [
        QueueEntry(_profile(row, "u", row["user_id"]), from_us(row["queued_at"])) for row in rows
    ]
    c = conversations
    w = accounts.alias("w")
    rows = conn.execute(
        select(*_conversation_cols(), *_profile_cols(u, "u"), *_profile_cols(w, "w"))
        .select_from(c.outerjoin(u, u.c.id == c.c.user_id).outerjoin(w, w.c.id == c.c.waiter_id))
        .where(c.c.closed_at.is_(None))
        .order_by(c.c.opened_at, c.c.id)
    ).mappings()
    open_ = [
        (
            _conversation(row),
            _profile(row, "u", row["c_user_id"]),
            _profile(row, "w", row["c_waiter_id"]),
        )
        for row in rows
    ]
    return OpenState(queue=queue, conversations=open_)


__all__ = [
    "MAX_LIMIT",
    "create_account",
    "get_account",
    "get_account_by_username",
    "history",
    "latest_conversation",
    "load_open_state",
    "messages_after",
    "sessions",
    "upsert_account",
]
