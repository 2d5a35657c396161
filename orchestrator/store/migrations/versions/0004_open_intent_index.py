"""orders: a partial index on open intents, for `status --stuck`

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_orders_open_intent",
        "orders",
        ["intent_at"],
        sqlite_where=sa.text("intent IS NOT NULL"),
        postgresql_where=sa.text("intent IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_orders_open_intent", table_name="orders")
