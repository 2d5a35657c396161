"""orders: the cancel wait (canceled_from), orders that need a person (needs_attention), since when
VTEX shows its status, and the per-order request guard

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.add_column("orders", sa.Column("canceled_from", sa.String(length=32), nullable=True))
    op.add_column("orders", sa.Column("needs_attention", sa.String(length=32), nullable=True))
    op.add_column("orders", sa.Column("vtex_status_since", TS, nullable=True))
    op.add_column("orders", sa.Column("requests_window_at", TS, nullable=True))
    op.add_column("orders", sa.Column("requests_in_window", sa.Integer(), nullable=False, server_default="0"))
    op.create_index(
        "ix_orders_needs_attention",
        "orders",
        ["needs_attention"],
        sqlite_where=sa.text("needs_attention IS NOT NULL"),
        postgresql_where=sa.text("needs_attention IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_orders_needs_attention", table_name="orders")
    for column in (
        "requests_in_window",
        "requests_window_at",
        "vtex_status_since",
        "needs_attention",
        "canceled_from",
    ):
        op.drop_column("orders", column)
