"""Opening the store: the engine for the configured URL, its schema brought to head, a store.

Kept apart from `wiring` so that read-only commands (`status`, `show`) do not import the daemon,
the scheduler and the HTTP client just to read a few rows.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.engine import Engine

from orchestrator.redaction import mask_url
from orchestrator.store.dialects import create_db_engine
from orchestrator.store.errors import DatabaseError, NoDatabase, is_connection_lost
from orchestrator.store.migrate import current_revision, ensure_schema, head_revision
from orchestrator.store.patience import COMMAND_PATIENCE, patiently
from orchestrator.store.store import Store


def open_store(
    database_url: str,
    *,
    pool_size: int = 5,
    migrate: bool = True,
    create: bool = True,
    log: Any | None = None,
    patience: float | None = None,
) -> Store:
    """The store on the configured database.

    `create=True` (import, migrate, run, token create) creates a missing SQLite file and brings the schema to
    head. `create=False` (every other command) only opens what is there, and says plainly when
    that is not an orchestrator database at this version, instead of reporting an empty one.

    A command retries only a connection the server ended (a restart, a failover), briefly. A
    daemon (`patience`, with its `log`) waits out any failure that passes, a line each time."""
    engine, hooks = create_db_engine(database_url, pool_size=pool_size, create=create)

    def prepare() -> None:
        if create and migrate:
            ensure_schema(engine)
        elif not create:
            _require_schema(engine, database_url)

    if patience is None:
        patiently(
            prepare,
            what="opening the database",
            log=None,
            patience=COMMAND_PATIENCE,
            passes=is_connection_lost,
        )
    else:
        patiently(prepare, what="opening the database", log=log, patience=patience)
    return Store(engine, hooks)


def _require_schema(engine: Engine, url: str) -> None:
    found = current_revision(engine)
    if found is None:
        raise NoDatabase(
            f"{mask_url(url)} holds no orchestrator tables: check ORCHESTRATOR_DATABASE_URL "
            "(only `import`, `migrate` and `run` create them)"
        )
    wanted = head_revision()
    if found != wanted:
        raise DatabaseError(
            f"the database schema is at revision {found} and this version needs {wanted}: "
            "run `orchestrator migrate` (a daemon of this version also does it on start)"
        )
