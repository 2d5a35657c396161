"""orders: a narrow index on state alone, so counting a million orders per state reads half the pages

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-27
"""

from __future__ import annotations

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_orders_state", "orders", ["state"])


def downgrade() -> None:
    op.drop_index("ix_orders_state", table_name="orders")
