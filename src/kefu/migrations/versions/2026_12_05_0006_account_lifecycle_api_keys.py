"""accounts: disabled, tokens revoked, erased; api_keys: the admin API's keys

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-05

* `accounts.disabled_at`: set while an account is disabled (it cannot
  authenticate); `tokens_after`: tokens issued before it (by their `iat`)
  are refused for the account (a logout); `erased_at`: the person was
  erased (profile cleared, what they wrote removed; the conversations stay
  as anonymous records). All three are microseconds, NULL when unset.
* `ix_accounts_created_at_id`: the admin API lists accounts newest first,
  page by page, by (created_at, id).
* `api_keys`: keys of the admin API (`kefu api-keys create`). Only a SHA-256
  of the key is kept (a key is 256 random bits, so a fast hash is enough);
  `prefix` is the key's first characters, to tell keys apart in a listing.

Existing accounts keep working: every new column is NULL for them.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("accounts") as batch:
        batch.add_column(sa.Column("disabled_at", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("tokens_after", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("erased_at", sa.BigInteger(), nullable=True))
        batch.create_index("ix_accounts_created_at_id", ["created_at", "id"])
    op.create_table(
        "api_keys",
        sa.Column("id", sa.String(20), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("key_hash", sa.String(64), nullable=False),
        sa.Column("prefix", sa.String(16), nullable=False),
        sa.Column("read_only", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("last_used_at", sa.BigInteger(), nullable=True),
        sa.Column("revoked_at", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_keys")),
        sa.UniqueConstraint("name", name=op.f("uq_api_keys_name")),
        sa.UniqueConstraint("key_hash", name=op.f("uq_api_keys_key_hash")),
    )


def downgrade() -> None:
    op.drop_table("api_keys")
    with op.batch_alter_table("accounts") as batch:
        batch.drop_index("ix_accounts_created_at_id")
        batch.drop_column("erased_at")
        batch.drop_column("tokens_after")
        batch.drop_column("disabled_at")
