"""orders belong to a configured VTEX account: existing orders to `default` (the single-account
settings), and an order id unique per account instead of overall

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

DUE = sa.text("next_run_at IS NOT NULL")


def upgrade() -> None:
    # A server default fills every existing row in the same statement: nothing is left unassigned.
    with op.batch_alter_table("orders") as batch:
        batch.add_column(sa.Column("account", sa.String(length=40), nullable=False, server_default="default"))
        batch.drop_constraint("uq_orders_identity", type_="unique")
        batch.drop_constraint("uq_orders_order_id", type_="unique")
        batch.create_unique_constraint(
            "uq_orders_identity", ["account", "affiliate_id", "marketplace_order_id"]
        )
        batch.create_unique_constraint("uq_orders_order_id", ["account", "order_id"])
    op.create_index(
        "ix_orders_account_next_run_at",
        "orders",
        ["account", "next_run_at"],
        sqlite_where=DUE,
        postgresql_where=DUE,
    )
    op.create_index("ix_orders_account_state", "orders", ["account", "state"])
    # Found by order id alone (`show ABC-1`), whichever account holds it.
    op.create_index("ix_orders_order_id", "orders", ["order_id"])


def downgrade() -> None:
    op.drop_index("ix_orders_order_id", table_name="orders")
    op.drop_index("ix_orders_account_state", table_name="orders")
    op.drop_index("ix_orders_account_next_run_at", table_name="orders")
    with op.batch_alter_table("orders") as batch:
        batch.drop_constraint("uq_orders_order_id", type_="unique")
        batch.drop_constraint("uq_orders_identity", type_="unique")
        batch.create_unique_constraint("uq_orders_order_id", ["order_id"])
        batch.create_unique_constraint("uq_orders_identity", ["affiliate_id", "marketplace_order_id"])
        batch.drop_column("account")
