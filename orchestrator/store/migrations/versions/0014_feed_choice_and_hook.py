"""vtex_feeds learns the two ways of listening it lacked: `declined`, why an account left on
`auto` polls by choice (its app key may not read the feed, or another integration configured it),
which is not a problem to alert on; and the Hook's side (`hook_configured_at`, `hook_event_at`,
`hook_problem`), for `status` and `check`.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.add_column("vtex_feeds", sa.Column("declined", sa.String(length=300), nullable=True))
    op.add_column("vtex_feeds", sa.Column("hook_configured_at", TS, nullable=True))
    op.add_column("vtex_feeds", sa.Column("hook_event_at", TS, nullable=True))
    op.add_column("vtex_feeds", sa.Column("hook_problem", sa.String(length=300), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("vtex_feeds") as batch:
        for column in ("hook_problem", "hook_event_at", "hook_configured_at", "declined"):
            batch.drop_column(column)
