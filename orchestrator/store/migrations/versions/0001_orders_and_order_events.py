"""orders and order_events

Revision ID: 0001
Revises:
Create Date: 2026-11-27

Self-contained on purpose: a migration must keep producing the same schema when the models move on.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "orders",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("order_id", sa.String(length=120), nullable=False),
        sa.Column("affiliate_id", sa.String(length=3), nullable=False),
        sa.Column("marketplace_order_id", sa.String(length=100), nullable=False),
        sa.Column("sales_channel", sa.String(length=20), nullable=True),
        sa.Column("state", sa.String(length=32), nullable=False),
        sa.Column("failed_from", sa.String(length=32), nullable=True),
        sa.Column("place_body", sa.JSON(), nullable=False),
        sa.Column("value", sa.Integer(), nullable=False),
        sa.Column("invoice", sa.JSON(), nullable=True),
        sa.Column("invoice_number", sa.String(length=100), nullable=True),
        sa.Column("invoice_sent_at", TS, nullable=True),
        sa.Column("tracking", sa.JSON(), nullable=True),
        sa.Column("tracking_sent_at", TS, nullable=True),
        sa.Column("cancel_reason", sa.String(length=500), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("last_error_code", sa.String(length=64), nullable=True),
        sa.Column("last_http_status", sa.Integer(), nullable=True),
        sa.Column("wait_reason", sa.String(length=300), nullable=True),
        sa.Column("vtex_status", sa.String(length=64), nullable=True),
        sa.Column("vtex_status_at", TS, nullable=True),
        sa.Column("intent", sa.String(length=32), nullable=True),
        sa.Column("intent_attempt", sa.Integer(), nullable=True),
        sa.Column("intent_at", TS, nullable=True),
        sa.Column("next_run_at", TS, nullable=True),
        sa.Column("lease_owner", sa.String(length=120), nullable=True),
        sa.Column("lease_expires_at", TS, nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("authorized_at", TS, nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.Column("state_changed_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_orders"),
        sa.UniqueConstraint("affiliate_id", "marketplace_order_id", name="uq_orders_identity"),
        sa.UniqueConstraint("order_id", name="uq_orders_order_id"),
    )
    op.create_index(
        "ix_orders_next_run_at",
        "orders",
        ["next_run_at"],
        sqlite_where=sa.text("next_run_at IS NOT NULL"),
        postgresql_where=sa.text("next_run_at IS NOT NULL"),
    )
    op.create_index("ix_orders_state_since", "orders", ["state", "state_changed_at"])

    op.create_table(
        "order_events",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("order_pk", sa.Integer(), nullable=False),
        sa.Column("at", TS, nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("action", sa.String(length=32), nullable=True),
        sa.Column("from_state", sa.String(length=32), nullable=True),
        sa.Column("to_state", sa.String(length=32), nullable=True),
        sa.Column("attempt", sa.Integer(), nullable=True),
        sa.Column("http_status", sa.Integer(), nullable=True),
        sa.Column("duration_ms", sa.Float(), nullable=True),
        sa.Column("error_code", sa.String(length=64), nullable=True),
        sa.Column("message", sa.Text(), nullable=True),
        sa.Column("worker", sa.String(length=120), nullable=True),
        sa.ForeignKeyConstraint(["order_pk"], ["orders.id"], name="fk_order_events_order_pk_orders"),
        sa.PrimaryKeyConstraint("id", name="pk_order_events"),
    )
    op.create_index("ix_order_events_order", "order_events", ["order_pk", "id"])


def downgrade() -> None:
    op.drop_index("ix_order_events_order", table_name="order_events")
    op.drop_table("order_events")
    op.drop_index("ix_orders_state_since", table_name="orders")
    op.drop_index("ix_orders_next_run_at", table_name="orders")
    op.drop_table("orders")
