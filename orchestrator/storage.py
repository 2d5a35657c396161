"""Opening the store: the engine for the configured URL, its schema brought to head, a repository.

Kept apart from `wiring` so that read-only commands (`status`, `show`) do not import the daemon,
the scheduler and the HTTP client just to read a few rows.
"""

from __future__ import annotations

from orchestrator.database import create_db_engine
from orchestrator.migrate import ensure_schema
from orchestrator.repository import Repository
from orchestrator.settings import Settings


def open_repository(settings: Settings, *, migrate: bool = True) -> Repository:
    engine, hooks = create_db_engine(settings.database_url, pool_size=max(5, settings.concurrency // 16))
    if migrate:
        ensure_schema(engine)
    return Repository(engine, hooks)
