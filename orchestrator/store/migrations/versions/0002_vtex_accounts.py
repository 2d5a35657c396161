"""vtex_accounts: account-wide pauses (rejected credentials) visible to every daemon and to status

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "vtex_accounts",
        sa.Column("account", sa.String(length=200), nullable=False),
        sa.Column("paused_until", TS, nullable=True),
        sa.Column("pause_reason", sa.String(length=300), nullable=True),
        sa.Column("paused_since", TS, nullable=True),
        sa.Column("updated_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("account", name="pk_vtex_accounts"),
    )


def downgrade() -> None:
    op.drop_table("vtex_accounts")
