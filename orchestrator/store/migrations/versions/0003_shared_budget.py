"""vtex_accounts: the account's request budget and 429 pause, shared by every daemon

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("vtex_accounts") as batch:
        batch.add_column(sa.Column("budget_tokens", sa.Float(), nullable=True))
        batch.add_column(sa.Column("budget_refilled_at", TS, nullable=True))
        batch.add_column(sa.Column("throttled_until", TS, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("vtex_accounts") as batch:
        batch.drop_column("throttled_until")
        batch.drop_column("budget_refilled_at")
        batch.drop_column("budget_tokens")
