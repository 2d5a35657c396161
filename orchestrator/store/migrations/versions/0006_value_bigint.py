"""orders.value as a 64-bit integer: an order's value in cents may exceed 2^31 (21 million)

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # SQLite's INTEGER already holds 64 bits (and rebuilding the table would cost a copy of it).
    if op.get_bind().dialect.name == "postgresql":
        op.alter_column("orders", "value", type_=sa.BigInteger(), existing_type=sa.Integer())


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.alter_column("orders", "value", type_=sa.Integer(), existing_type=sa.BigInteger())
