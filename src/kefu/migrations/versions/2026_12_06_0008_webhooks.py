"""webhooks, webhook_outbox, webhook_deliveries: signed webhooks delivered from an outbox

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06

* `webhooks`: where to POST events (`url`), which (`events`: a JSON list of
  names, or ["*"]) and the secret that signs them.
* `webhook_outbox`: events written in the same transaction as the change
  that causes them (the writer's batch for the conversation lifecycle and
  messages, the account change for account events), so a crash neither
  loses nor invents one. `seq` orders them (SQLite: AUTOINCREMENT, so a
  number is never reused). The delivery worker turns them into deliveries
  and deletes them.
* `webhook_deliveries`: one event to one webhook, with its attempts. The
  indexes serve the API's listing per webhook, the due deliveries, and the
  order per subject (a user, an account): one delivery at a time each.

Nothing existing changes: without a webhook no event is written.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "webhooks",
        sa.Column("id", sa.String(20), nullable=False),
        sa.Column("url", sa.String(2048), nullable=False),
        sa.Column("events", sa.Text(), nullable=False),
        sa.Column("secret", sa.String(128), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhooks")),
    )
    op.create_table(
        "webhook_outbox",
        sa.Column(
            "seq",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("event", sa.String(32), nullable=False),
        sa.Column("subject", sa.String(64), nullable=True),
        sa.Column("conversation_id", sa.String(20), nullable=True),
        sa.Column("ref", sa.Text(), nullable=True),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("data", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_webhook_outbox")),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "webhook_deliveries",
        sa.Column("id", sa.String(20), nullable=False),
        sa.Column("webhook_id", sa.String(20), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("subject", sa.String(64), nullable=False),
        sa.Column("event", sa.String(32), nullable=False),
        sa.Column("body", sa.Text(), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_at", sa.BigInteger(), nullable=True),
        sa.Column("last_status", sa.SmallInteger(), nullable=True),
        sa.Column("last_error", sa.String(256), nullable=True),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("last_attempt_at", sa.BigInteger(), nullable=True),
        sa.Column("finished_at", sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(
            ["webhook_id"],
            ["webhooks.id"],
            name=op.f("fk_webhook_deliveries_webhook_id_webhooks"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_deliveries")),
    )
    with op.batch_alter_table("webhook_deliveries") as batch:
        batch.create_index("ix_webhook_deliveries_webhook_id_id", ["webhook_id", "id"])
        batch.create_index("ix_webhook_deliveries_status_next_at", ["status", "next_at"])
        batch.create_index(
            "ix_webhook_deliveries_webhook_id_subject_status_seq",
            ["webhook_id", "subject", "status", "seq"],
        )


def downgrade() -> None:
    with op.batch_alter_table("webhook_deliveries") as batch:
        batch.drop_index("ix_webhook_deliveries_webhook_id_subject_status_seq")
        batch.drop_index("ix_webhook_deliveries_status_next_at")
        batch.drop_index("ix_webhook_deliveries_webhook_id_id")
    op.drop_table("webhook_deliveries")
    op.drop_table("webhook_outbox")
    op.drop_table("webhooks")
