"""Alembic environment: runs on a connection the CLI hands over, or on ORCHESTRATOR_DATABASE_URL."""

from __future__ import annotations

from alembic import context
from sqlmodel import SQLModel

import orchestrator.store.tables  # noqa: F401  (registers the tables on SQLModel.metadata)
from orchestrator.settings import load_settings
from orchestrator.store.dialects import create_db_engine

target_metadata = SQLModel.metadata


def run_migrations_online() -> None:
    connection = context.config.attributes.get("connection")
    if connection is not None:
        context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()
        return
    engine, _hooks = create_db_engine(load_settings().database_url)
    with engine.connect() as conn:
        context.configure(connection=conn, target_metadata=target_metadata, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


run_migrations_online()
