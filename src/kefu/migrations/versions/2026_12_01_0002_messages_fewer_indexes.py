"""messages: drop the (sender_id, id) and (receiver_id, id) indexes

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01

A user's history is read through its conversations
(ix_conversations_user_id_opened_at, then ix_messages_conversation_id_id), so
these two indexes only cost writes: every stored message added an entry to
each. Dropping an index needs no table rebuild, on SQLite either. The
downgrade builds them again.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_index("ix_messages_sender_id_id", table_name="messages")
    op.drop_index("ix_messages_receiver_id_id", table_name="messages")


def downgrade() -> None:
    op.create_index("ix_messages_receiver_id_id", "messages", ["receiver_id", "id"])
    op.create_index("ix_messages_sender_id_id", "messages", ["sender_id", "id"])
