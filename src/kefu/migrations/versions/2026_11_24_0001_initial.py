"""initial schema: accounts, conversations, queue_entries, messages

Revision ID: 0001
Revises:
Create Date: 2026-11-24

Tables are written out here (not `metadata.create_all`) so this revision stays
the same when `kefu/store/tables.py` changes later. Times are integer
microseconds since the Unix epoch.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "accounts",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("username", sa.String(64), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("nickname", sa.String(128), nullable=True),
        sa.Column("avatar", sa.String(2048), server_default="", nullable=False),
        sa.Column("password_hash", sa.String(256), nullable=True),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_accounts")),
        sa.UniqueConstraint("username", name=op.f("uq_accounts_username")),
    )
    op.create_table(
        "conversations",
        sa.Column("id", sa.String(20), nullable=False),
        sa.Column("user_id", sa.String(64), nullable=False),
        sa.Column("waiter_id", sa.String(64), nullable=False),
        sa.Column("opened_at", sa.BigInteger(), nullable=False),
        sa.Column("queued_at", sa.BigInteger(), nullable=True),
        sa.Column("closed_at", sa.BigInteger(), nullable=True),
        sa.Column("close_reason", sa.String(32), nullable=True),
        sa.Column("rate", sa.SmallInteger(), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"], ["accounts.id"], name=op.f("fk_conversations_user_id_accounts")
        ),
        sa.ForeignKeyConstraint(
            ["waiter_id"], ["accounts.id"], name=op.f("fk_conversations_waiter_id_accounts")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_conversations")),
    )
    op.create_index("ix_conversations_user_id_opened_at", "conversations", ["user_id", "opened_at"])
    op.create_index(
        "ix_conversations_waiter_id_opened_at", "conversations", ["waiter_id", "opened_at"]
    )
    op.create_index("ix_conversations_closed_at", "conversations", ["closed_at"])

    op.create_table(
        "queue_entries",
        sa.Column("user_id", sa.String(64), nullable=False),
        sa.Column("queued_at", sa.BigInteger(), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"], ["accounts.id"], name=op.f("fk_queue_entries_user_id_accounts")
        ),
        sa.PrimaryKeyConstraint("user_id", name=op.f("pk_queue_entries")),
    )
    op.create_index("ix_queue_entries_queued_at_seq", "queue_entries", ["queued_at", "seq"])

    op.create_table(
        "messages",
        sa.Column("id", sa.String(20), nullable=False),
        sa.Column("conversation_id", sa.String(20), nullable=False),
        sa.Column("type", sa.String(32), nullable=False),
        sa.Column("sender_id", sa.String(64), nullable=False),
        sa.Column("receiver_id", sa.String(64), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("op_id", sa.String(64), nullable=True),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["conversation_id"],
            ["conversations.id"],
            name=op.f("fk_messages_conversation_id_conversations"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_messages")),
        sa.UniqueConstraint("sender_id", "op_id", name=op.f("uq_messages_sender_id_op_id")),
    )
    op.create_index("ix_messages_sender_id_id", "messages", ["sender_id", "id"])
    op.create_index("ix_messages_receiver_id_id", "messages", ["receiver_id", "id"])
    op.create_index("ix_messages_conversation_id_id", "messages", ["conversation_id", "id"])


def downgrade() -> None:
    op.drop_table("messages")
    op.drop_table("queue_entries")
    op.drop_table("conversations")
    op.drop_table("accounts")
