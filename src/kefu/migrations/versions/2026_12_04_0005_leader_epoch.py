"""leader_epoch: the one row a cluster's leader fences the old leader's writes with

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-04

A leader stores its epoch when it takes over (`Store.claim_epoch`: only a
greater epoch replaces the stored one), and every batch of its lifecycle
records checks, in the same transaction, that the stored epoch is still its
own. A leader that lost its lease but has not noticed yet can then no longer
write queue entries or open and close conversations. The table has exactly
one row, id 1, inserted here with epoch 0 (no leader yet); a CHECK keeps it
that way. One node without a cluster never uses it.

A new table needs no batch mode on SQLite (nothing is altered in place).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    table = op.create_table(
        "leader_epoch",
        sa.Column("id", sa.SmallInteger(), autoincrement=False, nullable=False),
        sa.Column("epoch", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_leader_epoch")),
        sa.CheckConstraint("id = 1", name=op.f("ck_leader_epoch_one_row")),
    )
    op.bulk_insert(table, [{"id": 1, "epoch": 0}])


def downgrade() -> None:
    op.drop_table("leader_epoch")
