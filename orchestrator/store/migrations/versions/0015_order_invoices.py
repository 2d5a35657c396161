"""An order carries a list of invoices (`orders.invoices`: Output invoices, partial ones, and
Input invoices for returns), each with its own tracking, instead of one invoice and one tracking
number; VTEX's current value of the order (`vtex_value`); and sums of what VTEX took, for reports
and metrics. The one invoice (and tracking) of each existing order becomes the first entry of its
list, sent or not as it was, then the old columns go.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-06
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

BIG = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
OLD = ("invoice", "invoice_sent_at", "tracking", "tracking_sent_at")
BATCH = 1000


def upgrade() -> None:
    op.add_column("orders", sa.Column("invoices", sa.JSON(), nullable=True))
    op.add_column("orders", sa.Column("vtex_value", BIG, nullable=True))
    for name, kind in (
        ("invoiced_value", BIG),
        ("invoices_sent", sa.Integer()),
        ("returned_value", BIG),
        ("returns_sent", sa.Integer()),
    ):
        op.add_column("orders", sa.Column(name, kind, nullable=False, server_default="0"))
    # Orders with a return: few, counted by `status` without reading the rest.
    returned = sa.text("returns_sent > 0")
    op.create_index(
        "ix_orders_returns_sent", "orders", ["returns_sent"], sqlite_where=returned, postgresql_where=returned
    )
    _move_invoices()
    for name in OLD:
        if op.get_bind().dialect.name == "sqlite":
            # SQLite drops an unindexed column in place (3.35+); a batch rebuild would copy the table
            # and lose the partial indexes' WHERE clauses on the way.
            op.execute(f"ALTER TABLE orders DROP COLUMN {name}")
        else:
            op.drop_column("orders", name)


def _as_iso(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):  # SQLite's text, UTC without an offset
        value = datetime.fromisoformat(value)
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return str(value.astimezone(UTC).isoformat())


def _loaded(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


def _move_invoices() -> None:
    """Each order's invoice becomes the first entry of its list (`states.invoices.entry`)."""
    bind = op.get_bind()
    orders = sa.table(
        "orders",
        sa.column("id", sa.Integer()),
        sa.column("created_at"),
        sa.column("invoice"),
        sa.column("invoice_sent_at"),
        sa.column("tracking"),
        sa.column("tracking_sent_at"),
        sa.column("invoices", sa.JSON()),
        sa.column("invoiced_value", BIG),
        sa.column("invoices_sent", sa.Integer()),
    )
    last = 0
    while True:
        rows = bind.execute(
            sa.select(
                orders.c.id,
                orders.c.created_at,
                orders.c.invoice,
                orders.c.invoice_sent_at,
                orders.c.tracking,
                orders.c.tracking_sent_at,
            )
            .where(orders.c.id > last, orders.c.invoice.is_not(None))
            .order_by(orders.c.id)
            .limit(BATCH)
        ).all()
        if not rows:
            return
        for row in rows:
            body = _loaded(row.invoice)
            if not isinstance(body, dict):
                continue
            sent = _as_iso(row.invoice_sent_at)
            tracking = _loaded(row.tracking)
            value = int(body.get("invoiceValue") or 0)
            entry = {
                "number": body.get("invoiceNumber"),
                "type": body.get("type") or "Output",
                "value": value,
                "body": body,
                "attached_at": _as_iso(row.created_at),
                "sent_at": sent,
                "tracking": tracking if isinstance(tracking, dict) else None,
                "tracking_sent_at": _as_iso(row.tracking_sent_at),
            }
            bind.execute(
                orders.update()
                .where(orders.c.id == row.id)
                .values(
                    invoices=[entry],
                    invoiced_value=value if sent else 0,
                    invoices_sent=1 if sent else 0,
                )
            )
        last = rows[-1].id


def downgrade() -> None:
    op.drop_index("ix_orders_returns_sent", table_name="orders")
    op.add_column("orders", sa.Column("invoice", sa.JSON(), nullable=True))
    op.add_column("orders", sa.Column("invoice_sent_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("orders", sa.Column("tracking", sa.JSON(), nullable=True))
    op.add_column("orders", sa.Column("tracking_sent_at", sa.DateTime(timezone=True), nullable=True))
    # The old columns come back empty: a downgrade loses the invoice lists (take a backup first).
    for name in (
        "returns_sent",
        "returned_value",
        "invoices_sent",
        "invoiced_value",
        "vtex_value",
        "invoices",
    ):
        if op.get_bind().dialect.name == "sqlite":
            op.execute(f"ALTER TABLE orders DROP COLUMN {name}")
        else:
            op.drop_column("orders", name)
