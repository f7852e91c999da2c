"""queue_exits: every departure from the queue, served or not; conversations by opening

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06

A queue entry is deleted when its user is served or leaves, so the queue
kept no trace of the users who gave up waiting. The writer now adds a row
here in the same transaction as each delete (`Dequeue`): the user, when it
arrived (`queued_at`), when it left the queue (`left_at`, microseconds) and
whether it left because a waiter took it (`served`). The admin API's
statistics count "left while queued" from it (`ix_queue_exits_left_at`
bounds a range), and retention purges old rows by `left_at`.

No primary key: a user served, requeued in its old place and served again
leaves two rows with the same `queued_at`, and nothing reads one row alone.

`ix_conversations_opened_at_id`: the admin API lists conversations newest
first by (opened_at, id), page by page, and its statistics and the export
read a range of opening times; without it each page sorted the whole table.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "queue_exits",
        sa.Column("user_id", sa.String(64), nullable=False),
        sa.Column("queued_at", sa.BigInteger(), nullable=False),
        sa.Column("left_at", sa.BigInteger(), nullable=False),
        sa.Column("served", sa.Boolean(), nullable=False),
    )
    with op.batch_alter_table("queue_exits") as batch:
        batch.create_index("ix_queue_exits_left_at", ["left_at"])
    with op.batch_alter_table("conversations") as batch:
        batch.create_index("ix_conversations_opened_at_id", ["opened_at", "id"])


def downgrade() -> None:
    with op.batch_alter_table("conversations") as batch:
        batch.drop_index("ix_conversations_opened_at_id")
    with op.batch_alter_table("queue_exits") as batch:
        batch.drop_index("ix_queue_exits_left_at")
    op.drop_table("queue_exits")
