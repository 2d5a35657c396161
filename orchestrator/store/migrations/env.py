"""Alembic environment: runs on a connection the CLI hands over, or on ORCHESTRATOR_DATABASE_URL."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection
from sqlmodel import SQLModel

import orchestrator.store.tables  # noqa: F401  (registers the tables on SQLModel.metadata)
from orchestrator.config.settings import load_settings
from orchestrator.store.dialects import create_db_engine
from orchestrator.store.migrate import check_foreign_keys, foreign_keys_off

target_metadata = SQLModel.metadata


def _migrate(conn: Connection) -> None:
    context.configure(connection=conn, target_metadata=target_metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()
        check_foreign_keys(conn)


def run_migrations_online() -> None:
    connection = context.config.attributes.get("connection")
    if connection is not None:  # `orchestrator.store.migrate.upgrade`: foreign keys already off
        _migrate(connection)
        return
    engine, _hooks = create_db_engine(load_settings().database_url)
    with engine.connect() as conn, foreign_keys_off(conn):
        _migrate(conn)
    engine.dispose()


run_migrations_online()
