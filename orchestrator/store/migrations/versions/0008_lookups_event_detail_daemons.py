"""orders found by the ids operators quote (marketplace order id, invoice number), the detail of a
history row (an order's previous body when it was replaced), and the daemons' heartbeats

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_index("ix_orders_marketplace_order_id", "orders", ["marketplace_order_id"])
    op.create_index(
        "ix_orders_invoice_number",
        "orders",
        ["invoice_number"],
        sqlite_where=sa.text("invoice_number IS NOT NULL"),
        postgresql_where=sa.text("invoice_number IS NOT NULL"),
    )
    op.add_column("order_events", sa.Column("detail", sa.JSON(), nullable=True))
    op.create_table(
        "daemons",
        sa.Column("worker", sa.String(length=120), nullable=False),
        sa.Column("host", sa.String(length=255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("version", sa.String(length=40), nullable=False),
        sa.Column("started_at", TS, nullable=False),
        sa.Column("last_seen_at", TS, nullable=False),
        sa.Column("stopped_at", TS, nullable=True),
        sa.PrimaryKeyConstraint("worker", name="pk_daemons"),
    )


def downgrade() -> None:
    op.drop_table("daemons")
    op.drop_column("order_events", "detail")
    op.drop_index("ix_orders_invoice_number", table_name="orders")
    op.drop_index("ix_orders_marketplace_order_id", table_name="orders")
