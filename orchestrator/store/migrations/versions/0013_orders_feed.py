"""The Orders Feed: vtex_events, the inbox of feed items (one per VTEX eventId and account, until
applied to its order); vtex_feeds, each account's feed (who reads it, under a lease, and what was
last seen of it); orders.vtex_event_at, when the last feed event about the order was applied

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.add_column("orders", sa.Column("vtex_event_at", TS, nullable=True))
    op.create_table(
        "vtex_events",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("account", sa.String(length=200), nullable=False),
        sa.Column("event_id", sa.String(length=100), nullable=False),
        sa.Column("order_id", sa.String(length=120), nullable=False),
        sa.Column("state", sa.String(length=64), nullable=False),
        sa.Column("last_state", sa.String(length=64), nullable=True),
        sa.Column("current_change", TS, nullable=True),
        sa.Column("received_at", TS, nullable=False),
        sa.Column("applied_at", TS, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_vtex_events"),
        sa.UniqueConstraint("account", "event_id", name="uq_vtex_events_account_event"),
    )
    op.create_index("ix_vtex_events_order", "vtex_events", ["account", "order_id"])
    op.create_index("ix_vtex_events_received", "vtex_events", ["received_at"])
    op.create_table(
        "vtex_feeds",
        sa.Column("account", sa.String(length=200), nullable=False),
        sa.Column("owner", sa.String(length=120), nullable=True),
        sa.Column("lease_until", TS, nullable=True),
        sa.Column("configured_at", TS, nullable=True),
        sa.Column("read_at", TS, nullable=True),
        sa.Column("event_at", TS, nullable=True),
        sa.Column("problem", sa.String(length=300), nullable=True),
        sa.Column("updated_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("account", name="pk_vtex_feeds"),
    )


def downgrade() -> None:
    op.drop_table("vtex_feeds")
    op.drop_index("ix_vtex_events_received", table_name="vtex_events")
    op.drop_index("ix_vtex_events_order", table_name="vtex_events")
    op.drop_table("vtex_events")
    op.drop_column("orders", "vtex_event_at")
