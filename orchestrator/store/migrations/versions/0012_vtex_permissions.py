"""vtex_permissions: the License Manager resources VTEX refused an account's calls for (403), one
row per account and resource while the calls needing it pause

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "vtex_permissions",
        sa.Column("account", sa.String(length=200), nullable=False),
        sa.Column("resource", sa.String(length=120), nullable=False),
        sa.Column("operation", sa.String(length=32), nullable=False),
        sa.Column("message", sa.String(length=300), nullable=True),
        sa.Column("since", TS, nullable=False),
        sa.Column("until", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("account", "resource", name="pk_vtex_permissions"),
    )


def downgrade() -> None:
    op.drop_table("vtex_permissions")
