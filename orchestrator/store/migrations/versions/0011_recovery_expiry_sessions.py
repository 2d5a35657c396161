"""vtex_accounts: the recovery after a 429 (429s in a row, the one probe out, the ramp's start);
api_tokens: an optional expiry; console_sessions: console logins kept server-side, so logging out
ends them; orders.wait_code: why an order waits on its account (a pause), as a code

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    # Plain added columns: SQLite adds them in place, no table is rebuilt.
    op.add_column(
        "vtex_accounts", sa.Column("throttle_strikes", sa.Integer(), nullable=False, server_default="0")
    )
    op.add_column("vtex_accounts", sa.Column("probe_at", TS, nullable=True))
    op.add_column("vtex_accounts", sa.Column("ramp_from", TS, nullable=True))
    op.add_column("api_tokens", sa.Column("expires_at", TS, nullable=True))
    op.add_column("orders", sa.Column("wait_code", sa.String(length=32), nullable=True))
    op.create_table(
        "console_sessions",
        sa.Column("id_hash", sa.String(length=64), nullable=False),
        sa.Column("token_name", sa.String(length=100), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("expires_at", TS, nullable=False),
        sa.Column("ended_at", TS, nullable=True),
        sa.PrimaryKeyConstraint("id_hash", name="pk_console_sessions"),
    )
    op.create_index("ix_console_sessions_token_name", "console_sessions", ["token_name"])


def downgrade() -> None:
    op.drop_index("ix_console_sessions_token_name", table_name="console_sessions")
    op.drop_table("console_sessions")
    op.drop_column("orders", "wait_code")
    op.drop_column("api_tokens", "expires_at")
    op.drop_column("vtex_accounts", "ramp_from")
    op.drop_column("vtex_accounts", "probe_at")
    op.drop_column("vtex_accounts", "throttle_strikes")
