"""accounts: local accounts and accounts of the host application, in separate namespaces

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-04

`kind` is `local` (made by kefu: the CLI, the API, the demo; they may have a
password) or `external` (made from a token the host application signed; its
`sub` is kept in `external_id` and is looked up only there). Usernames are
unique within a kind, so a host application's user can neither take nor be
refused a local account's username.

Existing accounts: those with a password become `local`; the others were
made from host tokens (or by the CLI without a password) and become
`external` with `external_id` = their id, so the tokens that made them keep
naming them.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("accounts") as batch:
        batch.add_column(sa.Column("kind", sa.String(16), server_default="local", nullable=False))
        batch.add_column(sa.Column("external_id", sa.String(64), nullable=True))
    op.execute(
        "UPDATE accounts SET kind = 'external', external_id = id WHERE password_hash IS NULL"
    )
    with op.batch_alter_table("accounts") as batch:
        batch.drop_constraint("uq_accounts_username", type_="unique")
        batch.create_unique_constraint("uq_accounts_kind_username", ["kind", "username"])
        batch.create_unique_constraint("uq_accounts_external_id", ["external_id"])


def downgrade() -> None:
    with op.batch_alter_table("accounts") as batch:
        batch.drop_constraint("uq_accounts_external_id", type_="unique")
        batch.drop_constraint("uq_accounts_kind_username", type_="unique")
        batch.create_unique_constraint("uq_accounts_username", ["username"])
        batch.drop_column("external_id")
        batch.drop_column("kind")
