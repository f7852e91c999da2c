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

import hashlib
import json
import uuid
from typing import Any

from sqlalchemy import Connection, FromClause, Select, and_, func, or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import RowMapping
from sqlalchemy.exc import IntegrityError

from kefu.core.model import AccountKind, Profile, Role
from kefu.store.base import (
    Account,
    AccountExists,
    AccountFilter,
    AccountUpdate,
    ApiKey,
    Conversation,
    HistoryEntry,
    NameTaken,
    OpenState,
    QueueEntry,
    SessionEntry,
    StoredMessage,
)
from kefu.store.outbox import ACCOUNT_CREATED, ACCOUNT_ERASED, ACCOUNT_UPDATED, account_event
from kefu.store.tables import (
    accounts,
    api_keys,
    conversations,
    from_us,
    from_us_or_none,
    messages,
    queue_entries,
    to_us,
)

MAX_LIMIT = 1000
_PROFILE_COLS = ("id", "username", "nickname", "avatar")


def clamp_limit(limit: int) -> int:
    """`limit` within 1..MAX_LIMIT."""
    return max(1, min(limit, MAX_LIMIT))


def profile_columns(alias: FromClause, prefix: str) -> list[Any]:
    """An account's profile columns, labelled `<prefix>_<column>` (for `profile_of`)."""
    return [alias.c[name].label(f"{prefix}_{name}") for name in _PROFILE_COLS]


def profile_of(row: RowMapping, prefix: str, fallback_id: str) -> Profile:
    """The profile of an account joined under `prefix` (`profile_columns`); one that is not
    there is named by its id."""
    if row[f"{prefix}_id"] is None:
        return Profile(id=fallback_id, username=fallback_id)
    return Profile(
        id=row[f"{prefix}_id"],
        username=row[f"{prefix}_username"],
        nickname=row[f"{prefix}_nickname"],
        avatar=row[f"{prefix}_avatar"] or "",
    )


def _account(row: RowMapping | None) -> Account | None:
    return None if row is None else _account_of(row)


def _account_of(row: RowMapping) -> Account:
    return Account(
        id=row["id"],
        username=row["username"],
        role=Role(row["role"]),
        nickname=row["nickname"],
        avatar=row["avatar"] or "",
        password_hash=row["password_hash"],
        kind=AccountKind(row["kind"]),
        external_id=row["external_id"],
        created_at=from_us_or_none(row["created_at"]),
        disabled_at=from_us_or_none(row["disabled_at"]),
        tokens_after=from_us_or_none(row["tokens_after"]),
        erased_at=from_us_or_none(row["erased_at"]),
    )


def _us(seconds: float | None) -> int | None:
    return None if seconds is None else to_us(seconds)


def _conversation(row: RowMapping, prefix: str = "c_") -> Conversation:
    closed = row[f"{prefix}closed_at"]
    queued = row[f"{prefix}queued_at"]
    return Conversation(
        id=row[f"{prefix}id"],
        user_id=row[f"{prefix}user_id"],
        waiter_id=row[f"{prefix}waiter_id"],
        opened=from_us(row[f"{prefix}opened_at"]),
        closed=from_us_or_none(closed),
        close_reason=row[f"{prefix}close_reason"],
        rate=row[f"{prefix}rate"],
        queued=from_us_or_none(queued),
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
            created = get_account(conn, account.id)
            if created is not None:  # its webhook event, in the same transaction
                account_event(conn, ACCOUNT_CREATED, created, now)
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


# -- the account lifecycle (the admin API) --------------------------------
ERASED_PAYLOADS = {
    "message_text": '{"text":"","erased":true}',
    "message_image": '{"image":"","erased":true}',
}
ERASED_PAYLOAD = '{"erased":true}'  # a message of any other type
_TIMES = ("disabled_at", "tokens_after")


def list_accounts(
    conn: Connection, where: AccountFilter, after: str | None, limit: int
) -> list[Account]:
    """Newest first by (created_at, id); after the account `after` (its id) in that order."""
    a = accounts
    query = select(a)
    if where.role is not None:
        query = query.where(a.c.role == where.role.value)
    if where.q:
        q = where.q.lower()
        query = query.where(
            or_(
                func.lower(a.c.username).contains(q, autoescape=True),
                func.lower(a.c.nickname).contains(q, autoescape=True),
            )
        )
    if after is not None:
        at = select(a.c.created_at).where(a.c.id == after).scalar_subquery()
        query = query.where(or_(a.c.created_at < at, and_(a.c.created_at == at, a.c.id < after)))
    query = query.order_by(a.c.created_at.desc(), a.c.id.desc()).limit(clamp_limit(limit))
    return [_account_of(row) for row in conn.execute(query).mappings()]


def update_account(conn: Connection, account_id: str, update: AccountUpdate) -> Account | None:
    """Set the fields `update` changes; the account as stored after (None if unknown). Commits."""
    values: dict[str, Any] = {}
    for name, value in update.changes().items():
        if name in _TIMES:
            value = _us(value)  # type: ignore[arg-type]
        elif isinstance(value, Role):
            value = value.value
        values[name] = value
    with conn.begin():
        if values:
            conn.execute(accounts.update().where(accounts.c.id == account_id).values(values))
        changed = get_account(conn, account_id)
        if values and changed is not None:  # its webhook event, in the same transaction
            account_event(conn, ACCOUNT_UPDATED, changed)
        return changed


def erased_username(account_id: str) -> str:
    """`erased-<id>`, within the column's 64 characters."""
    name = f"erased-{account_id}"
    if len(name) <= 64:
        return name
    return "erased-" + hashlib.sha256(account_id.encode()).hexdigest()[:57]


def erase_account(conn: Connection, account_id: str, now: float) -> Account | None:
    """Clear the profile, disable, refuse its tokens, empty what it wrote. Commits; idempotent."""
    a = accounts
    with conn.begin():
        found = get_account(conn, account_id)
        if found is None:
            return None
        username = found.username if found.erased_at is not None else erased_username(account_id)
        taken = conn.execute(
            select(a.c.id).where(
                a.c.kind == found.kind.value, a.c.username == username, a.c.id != account_id
            )
        ).first()
        if taken is not None:  # someone chose that name: any unique one will do
            username = "erased-" + uuid.uuid4().hex
        values: dict[str, Any] = {
            "username": username,
            "nickname": None,
            "avatar": "",
            "password_hash": None,
            "external_id": None,
        }
        if found.erased_at is None:  # a second erasure keeps the first one's times
            when = to_us(now)
            values.update(erased_at=when, tokens_after=when)
            if found.disabled_at is None:
                values["disabled_at"] = when
        conn.execute(a.update().where(a.c.id == account_id).values(values))
        m = messages
        theirs = m.c.sender_id == account_id
        for type_, payload in ERASED_PAYLOADS.items():
            conn.execute(m.update().where(theirs, m.c.type == type_).values(payload=payload))
        known = m.c.type.in_(list(ERASED_PAYLOADS))
        conn.execute(m.update().where(theirs, ~known).values(payload=ERASED_PAYLOAD))
        erased = get_account(conn, account_id)
        if found.erased_at is None and erased is not None:  # its webhook event, once
            account_event(conn, ACCOUNT_ERASED, erased, now)
        return erased


# -- API keys ----------------------------------------------------------------
def _api_key(row: RowMapping) -> ApiKey:
    return ApiKey(
        id=row["id"],
        name=row["name"],
        prefix=row["prefix"],
        read_only=bool(row["read_only"]),
        created_at=from_us(row["created_at"]),
        last_used_at=from_us_or_none(row["last_used_at"]),
        revoked_at=from_us_or_none(row["revoked_at"]),
    )


def create_api_key(conn: Connection, key: ApiKey, key_hash: str) -> ApiKey:
    """Insert; `NameTaken` if the name is used (by a revoked key too). Commits."""
    values = {
        "id": key.id,
        "name": key.name,
        "key_hash": key_hash,
        "prefix": key.prefix,
        "read_only": key.read_only,
        "created_at": to_us(key.created_at),
    }
    try:
        with conn.begin():
            conn.execute(api_keys.insert().values(values))
    except IntegrityError as exc:
        raise NameTaken(f"an API key named {key.name!r} exists") from exc
    return key


def api_key_by_hash(conn: Connection, key_hash: str) -> ApiKey | None:
    row = conn.execute(select(api_keys).where(api_keys.c.key_hash == key_hash)).mappings().first()
    return None if row is None else _api_key(row)


def list_api_keys(conn: Connection) -> list[ApiKey]:
    query = select(api_keys).order_by(api_keys.c.created_at, api_keys.c.id)
    return [_api_key(row) for row in conn.execute(query).mappings()]


def revoke_api_key(conn: Connection, name_or_id: str, now: float) -> ApiKey | None:
    """Revoke by name, or else by id; None if neither names a key. Commits; idempotent."""
    k = api_keys
    with conn.begin():
        row = conn.execute(select(k).where(k.c.name == name_or_id)).mappings().first()
        if row is None:
            row = conn.execute(select(k).where(k.c.id == name_or_id)).mappings().first()
        if row is None:
            return None
        conn.execute(
            k.update()
            .where(k.c.id == row["id"], k.c.revoked_at.is_(None))
            .values(revoked_at=to_us(now))
        )
        row = conn.execute(select(k).where(k.c.id == row["id"])).mappings().one()
        return _api_key(row)


def touch_api_key(conn: Connection, key_id: str, now: float) -> None:
    with conn.begin():
        conn.execute(
            api_keys.update().where(api_keys.c.id == key_id).values(last_used_at=to_us(now))
        )


def delete_api_key(conn: Connection, key_id: str) -> None:
    with conn.begin():
        conn.execute(api_keys.delete().where(api_keys.c.id == key_id))


# -- messages -------------------------------------------------------------
def _entries(conn: Connection, query: Select[Any]) -> list[HistoryEntry]:
    """Run a query over a `messages` subquery `m`, adding both profiles."""
    m = query.subquery("m")
    s = accounts.alias("s")
    r = accounts.alias("r")
    full = (
        select(m, *profile_columns(s, "s"), *profile_columns(r, "r"))
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
        sender=profile_of(row, "s", row[f"{prefix}sender_id"]),
        receiver=profile_of(row, "r", row[f"{prefix}receiver_id"]),
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
    limit = clamp_limit(limit)
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
        .limit(clamp_limit(limit))
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
            *profile_columns(u, "u"),
            *[col.label(f"m_{col.name}") for col in m.c],
            *profile_columns(s, "s"),
            *profile_columns(r, "r"),
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
            user=profile_of(row, "u", row["uid"]),
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
        select(q.c.user_id, q.c.queued_at, *profile_columns(u, "u"))
        .select_from(q.outerjoin(u, u.c.id == q.c.user_id))
        .order_by(q.c.queued_at, q.c.seq)
    ).mappings()
    queue = [
        QueueEntry(profile_of(row, "u", row["user_id"]), from_us(row["queued_at"])) for row in rows
    ]
    c = conversations
    w = accounts.alias("w")
    rows = conn.execute(
        select(*_conversation_cols(), *profile_columns(u, "u"), *profile_columns(w, "w"))
        .select_from(c.outerjoin(u, u.c.id == c.c.user_id).outerjoin(w, w.c.id == c.c.waiter_id))
        .where(c.c.closed_at.is_(None))
        .order_by(c.c.opened_at, c.c.id)
    ).mappings()
    open_ = [
        (
            _conversation(row),
            profile_of(row, "u", row["c_user_id"]),
            profile_of(row, "w", row["c_waiter_id"]),
        )
        for row in rows
    ]
    return OpenState(queue=queue, conversations=open_)


__all__ = [
    "MAX_LIMIT",
    "api_key_by_hash",
    "create_account",
    "create_api_key",
    "delete_api_key",
    "erase_account",
    "get_account",
    "get_account_by_username",
    "history",
    "latest_conversation",
    "list_accounts",
    "list_api_keys",
    "load_open_state",
    "messages_after",
    "revoke_api_key",
    "sessions",
    "touch_api_key",
    "update_account",
    "upsert_account",
]
