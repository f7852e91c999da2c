"""messages.op_id: 128 characters, as many as a frame's op_id may have

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-04

The protocol accepts an `op_id` of up to 128 characters, and the column had
64: PostgreSQL refused to store such a message (SQLite ignores the width).
On PostgreSQL widening a varchar changes only the catalog. On SQLite, batch
mode copies the table into a new one (`messages` with its unique key, foreign
key and index), in the upgrade's single transaction: a database with many
messages takes a while to start once.

The downgrade narrows the column again; on PostgreSQL it fails if a stored
op_id is longer than 64 characters.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("messages") as batch:
        batch.alter_column(
            "op_id", existing_type=sa.String(64), type_=sa.String(128), existing_nullable=True
        )


def downgrade() -> None:
    with op.batch_alter_table("messages") as batch:
        batch.alter_column(
            "op_id", existing_type=sa.String(128), type_=sa.String(64), existing_nullable=True
        )
