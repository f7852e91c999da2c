"""SQLAlchemy Core tables: the schema kefu keeps, in portable types.

Limits and conventions:

* Times are integer **microseconds** since the Unix epoch (`BigInteger`); the
  Store interface speaks float seconds (`to_us` / `from_us` convert).
* Message and conversation ids are fixed-width, time-ordered strings
  (`kefu.ids`), so string order is time order and `ORDER BY id` is
  chronological without a second column.
* `payload` is the JSON text exactly as given to the store.
* Every index on `messages` is written on every message stored, so it has
  only what the reads and the idempotency key need: the primary key,
  unique (sender_id, op_id) and (conversation_id, id). A user's messages are
  found through its conversations (`queries.history`).
* Constraint and index names follow `NAMING_CONVENTION`, so migrations
  (Alembic batch mode on SQLite) can refer to them by name.

This module is the model for autogenerate only: the schema is created by the
migrations in `kefu/migrations`, never by `metadata.create_all`.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    SmallInteger,
    String,
    Table,
    Text,
    UniqueConstraint,
)

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING_CONVENTION)

# `kind` is "local" (made by kefu) or "external" (made from a host application's
# token, whose `sub` is `external_id`): two namespaces that never meet.
accounts = Table(
    "accounts",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("username", String(64), nullable=False),
    Column("role", String(16), nullable=False),
    Column("nickname", String(128), nullable=True),
    Column("avatar", String(2048), nullable=False, default="", server_default=""),
    Column("password_hash", String(256), nullable=True),
    Column("created_at", BigInteger, nullable=False),
    Column("kind", String(16), nullable=False, default="local", server_default="local"),
    Column("external_id", String(64), nullable=True),
    # the account lifecycle (migration 0006): NULL while not disabled / no logout / not erased
    Column("disabled_at", BigInteger, nullable=True),
    Column("tokens_after", BigInteger, nullable=True),  # tokens with an older `iat` are refused
    Column("erased_at", BigInteger, nullable=True),
    UniqueConstraint("kind", "username", name="uq_accounts_kind_username"),
    UniqueConstraint("external_id", name="uq_accounts_external_id"),
    Index("ix_accounts_created_at_id", "created_at", "id"),  # the admin API's listing
)

# Keys of the admin API (`kefu api-keys create`): only a SHA-256 of the key is kept;
# `prefix` is its first characters, to tell keys apart in a listing.
api_keys = Table(
    "api_keys",
    metadata,
    Column("id", String(20), primary_key=True),
    Column("name", String(64), nullable=False),
    Column("key_hash", String(64), nullable=False),
    Column("prefix", String(16), nullable=False),
    Column("read_only", Boolean, nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("last_used_at", BigInteger, nullable=True),
    Column("revoked_at", BigInteger, nullable=True),
    UniqueConstraint("name", name="uq_api_keys_name"),
    UniqueConstraint("key_hash", name="uq_api_keys_key_hash"),
)

conversations = Table(
    "conversations",
    metadata,
    Column("id", String(20), primary_key=True),
    Column("user_id", String(64), ForeignKey("accounts.id"), nullable=False),
    Column("waiter_id", String(64), ForeignKey("accounts.id"), nullable=False),
    Column("opened_at", BigInteger, nullable=False),
    Column("queued_at", BigInteger, nullable=True),  # the user's arrival: its place if requeued
    Column("closed_at", BigInteger, nullable=True),
    Column("close_reason", String(32), nullable=True),
    Column("rate", SmallInteger, nullable=True),
    Index("ix_conversations_user_id_opened_at", "user_id", "opened_at"),
    Index("ix_conversations_waiter_id_opened_at", "waiter_id", "opened_at"),
    Index("ix_conversations_closed_at", "closed_at"),
    Index("ix_conversations_opened_at_id", "opened_at", "id"),  # the admin API (0007)
)

# Queue order is (queued_at, seq). `seq` is set on insert to max(seq) + 1 by the
# single writer (SQLite) or the switchboard leader (PostgreSQL): portable, no
# sequence object, and it only breaks ties between equal `queued_at`.
queue_entries = Table(
    "queue_entries",
    metadata,
    Column("user_id", String(64), ForeignKey("accounts.id"), primary_key=True),
    Column("queued_at", BigInteger, nullable=False),
    Column("seq", BigInteger, nullable=False),
    Index("ix_queue_entries_queued_at_seq", "queued_at", "seq"),
)

# Every departure from the queue (migration 0007), written with the entry's delete:
# `served` is false for a user who left while queued. No primary key (a requeued user
# keeps its `queued_at`, so rows may repeat); ranges are read and purged by `left_at`.
queue_exits = Table(
    "queue_exits",
    metadata,
    Column("user_id", String(64), nullable=False),
    Column("queued_at", BigInteger, nullable=False),
    Column("left_at", BigInteger, nullable=False),
    Column("served", Boolean, nullable=False),
    Index("ix_queue_exits_left_at", "left_at"),
)

messages = Table(
    "messages",
    metadata,
    Column("id", String(20), primary_key=True),
    Column("conversation_id", String(20), ForeignKey("conversations.id"), nullable=False),
    Column("type", String(32), nullable=False),
    Column("sender_id", String(64), nullable=False),
    Column("receiver_id", String(64), nullable=False),
    Column("payload", Text, nullable=False),
    Column("op_id", String(128), nullable=True),  # a frame's op_id: at most 128 chars
    Column("created_at", BigInteger, nullable=False),
    UniqueConstraint("sender_id", "op_id", name="uq_messages_sender_id_op_id"),
    Index("ix_messages_conversation_id_id", "conversation_id", "id"),
)

# One row (id 1): the epoch of the cluster's latest leader. A leader stores its
# epoch when it takes over (`Store.claim_epoch`), and each batch of its lifecycle
# records checks, in the same transaction, that the stored epoch is still its
# own; a leader that lost its lease can then no longer write. Migration 0005
# inserts the row with epoch 0.
leader_epoch = Table(
    "leader_epoch",
    metadata,
    Column("id", SmallInteger, primary_key=True, autoincrement=False),
    Column("epoch", BigInteger, nullable=False),
    CheckConstraint("id = 1", name="one_row"),
)


# -- webhooks (migration 0008; `store/webhooks/`, `store/outbox.py`) ----------------------
# `events` is a JSON list of event names, or ["*"]; `secret` signs every delivery.
webhooks = Table(
    "webhooks",
    metadata,
    Column("id", String(20), primary_key=True),
    Column("url", String(2048), nullable=False),
    Column("events", Text, nullable=False),
    Column("secret", String(128), nullable=False),
    Column("created_at", BigInteger, nullable=False),
)

# The outbox: events written in the transaction of the change that caused them (the
# writer's batch, or an account change), until the delivery worker fans them out into
# `webhook_deliveries` and deletes them. `seq` is their order. One row holds a run of
# consecutive messages of a batch (`ref`: their ids, comma-separated), so a batch of
# messages costs one row; `ref` of a transfer is the conversation it continues.
# `subject` is what events are ordered by (a user, an account); NULL for events of a
# conversation, whose user it is. SQLite: INTEGER PRIMARY KEY AUTOINCREMENT (never reused).
webhook_outbox = Table(
    "webhook_outbox",
    metadata,
    Column(
        "seq",
        BigInteger().with_variant(Integer(), "sqlite"),
        primary_key=True,
        autoincrement=True,
    ),
    Column("event", String(32), nullable=False),
    Column("subject", String(64), nullable=True),
    Column("conversation_id", String(20), nullable=True),
    Column("ref", Text, nullable=True),
    Column("created_at", BigInteger, nullable=False),
    Column("data", Text, nullable=True),
    sqlite_autoincrement=True,
)

# One event to one webhook. Per (webhook, subject) one delivery at a time is `pending`
# (tried when `next_at` comes), the later ones `waiting` behind it in `seq` order; when
# it is `delivered` or `failed` the next is made pending (`store/webhooks/attempts.py`). `body`
# is the JSON sent (cleared once final). `seq`: the outbox row's seq * 2**16 + the
# event's place in that row.
webhook_deliveries = Table(
    "webhook_deliveries",
    metadata,
    Column("id", String(20), primary_key=True),
    Column("webhook_id", String(20), ForeignKey("webhooks.id"), nullable=False),
    Column("seq", BigInteger, nullable=False),
    Column("subject", String(64), nullable=False),
    Column("event", String(32), nullable=False),
    Column("body", Text, nullable=True),
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("next_at", BigInteger, nullable=True),
    Column("last_status", SmallInteger, nullable=True),  # HTTP status of the last attempt
    Column("last_error", String(256), nullable=True),  # or why it got none
    Column("created_at", BigInteger, nullable=False),
    Column("last_attempt_at", BigInteger, nullable=True),
    Column("finished_at", BigInteger, nullable=True),  # delivered or failed
    Index("ix_webhook_deliveries_webhook_id_id", "webhook_id", "id"),  # the API's listing
    Index("ix_webhook_deliveries_status_next_at", "status", "next_at"),  # what is due
    Index(  # the head of a subject, and what waits behind it
        "ix_webhook_deliveries_webhook_id_subject_status_seq",
        "webhook_id",
        "subject",
        "status",
        "seq",
    ),
)


def to_us(seconds: float) -> int:
    """Float Unix seconds -> integer microseconds (rounded to nearest)."""
    return round(seconds * 1_000_000)


def from_us(us: int) -> float:
    """Integer microseconds -> float Unix seconds."""
    return us / 1_000_000


def from_us_or_none(us: int | None) -> float | None:
    """`from_us` of a column that may be NULL."""
    return None if us is None else from_us(us)
