"""Opening the store: the engine for the configured URL, its schema brought to head, a store.

Kept apart from `wiring` so that read-only commands (`status`, `show`) do not import the daemon,
the scheduler and the HTTP client just to read a few rows.
"""

from __future__ import annotations

import time

from sqlalchemy.engine import Engine

from orchestrator.redaction import mask_url
from orchestrator.store.dialects import create_db_engine
from orchestrator.store.errors import DatabaseError, NoDatabase, is_connection_lost
from orchestrator.store.migrate import current_revision, ensure_schema, head_revision
from orchestrator.store.store import Store


def open_store(database_url: str, *, pool_size: int = 5, migrate: bool = True, create: bool = True) -> Store:
    """The store on the configured database.

    `create=True` (import, migrate, run, token create) creates a missing SQLite file and brings the schema to
    head. `create=False` (every other command) only opens what is there, and says plainly when
    that is not an orchestrator database at this version, instead of reporting an empty one."""
    engine, hooks = create_db_engine(database_url, pool_size=pool_size, create=create)
    for attempt in range(1, STARTUP_ATTEMPTS + 1):
        try:
            if create and migrate:
                ensure_schema(engine)
            elif not create:
                _require_schema(engine, database_url)
            break
        except Exception as exc:
            # A connection the server ended (a restart, a failover) is worth another try; the
            # pool opens a fresh one. Anything else is the answer.
            if attempt == STARTUP_ATTEMPTS or not is_connection_lost(exc):
                raise
            time.sleep(0.5 * attempt)
    return Store(engine, hooks)


STARTUP_ATTEMPTS = 3


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
