"""Apply Alembic migrations from inside the CLI, without needing alembic.ini on disk.

Commands that touch the database call `ensure_schema` first: a fresh file or server gets the whole
schema, an older one is brought to head, and an up-to-date one costs a single small read. Alembic
itself (with mako and pygments behind it) is imported only when there is something to apply: it
took a third of a `status` command's start-up time.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from orchestrator.store.errors import DatabaseError

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
_REVISION = re.compile(r'^(down_revision|revision)\s*(?::[^=]*)?=\s*(?:"([^"]*)"|None)', re.MULTILINE)


def alembic_config() -> Config:
    from alembic.config import Config  # noqa: PLC0415  (start-up: only a migration needs Alembic)

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config


@cache
def head_revision() -> str | None:
    """The revision no other migration builds on, read from the files' `revision` lines."""
    revisions: set[str] = set()
    parents: set[str] = set()
    for path in (MIGRATIONS_DIR / "versions").glob("[0-9]*.py"):
        for name, value in _REVISION.findall(path.read_text(encoding="utf-8")):
            if value:
                (revisions if name == "revision" else parents).add(value)
    heads = revisions - parents
    if len(heads) > 1:
        raise RuntimeError(f"migrations have several heads: {sorted(heads)}")
    return next(iter(heads), None)


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        if not sa.inspect(conn).has_table("alembic_version"):
            return None
        revision: str | None = conn.scalar(sa.text("SELECT version_num FROM alembic_version"))
        return revision


def upgrade(engine: Engine, revision: str = "head") -> None:
    from alembic import command  # noqa: PLC0415  (start-up: only a migration needs Alembic)

    config = alembic_config()
    with engine.connect() as conn, foreign_keys_off(conn), conn.begin():
        config.attributes["connection"] = conn
        command.upgrade(config, revision)


@contextmanager
def foreign_keys_off(conn: sa.Connection) -> Iterator[None]:
    """SQLite's foreign keys off around a migration, as SQLite documents for schema changes.

    SQLite cannot alter most of a table in place, so a migration rebuilds it (Alembic's batch
    mode: copy, drop the old table, rename the copy). With foreign keys on, dropping `orders`
    deletes it row by row first, and every `order_events` row pointing at an order refuses that
    ("FOREIGN KEY constraint failed"): any database with history could not be upgraded. The
    pragma is ignored inside a transaction, so it is set on the bare connection before the
    migration's transaction begins; `check_foreign_keys` proves, before the commit, that the
    rebuilt tables still hold every row the history points at."""
    if conn.dialect.name != "sqlite":
        yield
        return
    raw = conn.connection.driver_connection
    assert raw is not None
    raw.execute("PRAGMA foreign_keys = OFF")
    try:
        yield
    finally:
        raw.execute("PRAGMA foreign_keys = ON")


def check_foreign_keys(conn: sa.Connection) -> None:
    """Refuse to commit a migration that left a row pointing at nothing (SQLite, whose foreign
    keys were off while it ran; PostgreSQL checks each statement itself)."""
    if conn.dialect.name != "sqlite":
        return
    broken = conn.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
    if broken:
        tables = sorted({str(row[0]) for row in broken})
        raise DatabaseError(
            f"the migration would leave {len(broken)} row(s) of {', '.join(tables)} pointing at nothing; "
            "nothing was changed"
        )


def ensure_schema(engine: Engine) -> bool:
    """Bring the schema to head; True when something was applied."""
    if current_revision(engine) == head_revision():
        return False
    upgrade(engine)
    return True
