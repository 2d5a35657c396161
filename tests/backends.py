"""Databases for the tests: a SQLite file, or a fresh PostgreSQL database cloned from a template.

PostgreSQL is found at ORCHESTRATOR_TEST_POSTGRES_URL (default: the local server, user postgres).
When it cannot be reached, PostgreSQL tests are skipped with the reason, unless
ORCHESTRATOR_TEST_POSTGRES=required (as `.ci/run` sets it), in which case they fail.
"""

from __future__ import annotations

import os
import uuid
from functools import cache

import pytest
import sqlalchemy as sa

from orchestrator.store.dialects import create_db_engine
from orchestrator.store.migrate import ensure_schema

SERVER_URL = os.environ.get(
    "ORCHESTRATOR_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
REQUIRED = os.environ.get("ORCHESTRATOR_TEST_POSTGRES", "").lower() == "required"
TEMPLATE = f"orchestrator_template_{os.getpid()}"


def _admin() -> sa.Engine:
    return sa.create_engine(sa.make_url(SERVER_URL), isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)


@cache
def _server_problem() -> str | None:
    try:
        with _admin().connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except Exception as exc:  # any reason at all: report it
        return f"{type(exc).__name__}: {exc}".splitlines()[0]
    return None


def require_postgres() -> None:
    problem = _server_problem()
    if problem is None:
        return
    message = f"PostgreSQL not reachable at {SERVER_URL} ({problem})"
    if REQUIRED:
        pytest.fail(message + "; ORCHESTRATOR_TEST_POSTGRES=required")
    pytest.skip(message + "; set ORCHESTRATOR_TEST_POSTGRES_URL to run these tests")


def _database_url(name: str) -> str:
    return sa.make_url(SERVER_URL).set(database=name).render_as_string(hide_password=False)


@cache
def _template() -> str:
    """A database with the migrated schema, cloned for each test (much faster than migrating)."""
    with _admin().connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{TEMPLATE}"'))
        conn.execute(sa.text(f'CREATE DATABASE "{TEMPLATE}"'))
    engine, _hooks = create_db_engine(_database_url(TEMPLATE))
    ensure_schema(engine)
    engine.dispose()
    return TEMPLATE


def create_database() -> tuple[str, str]:
    require_postgres()
    template = _template()
    name = f"orchestrator_test_{uuid.uuid4().hex[:12]}"
    with _admin().connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}" TEMPLATE "{template}"'))
    return name, _database_url(name)


def create_empty_database() -> tuple[str, str]:
    """A database without any table, for what must build its schema itself (upgrade tests)."""
    require_postgres()
    name = f"orchestrator_test_{uuid.uuid4().hex[:12]}"
    with _admin().connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    return name, _database_url(name)


def drop_database(name: str) -> None:
    with _admin().connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def drop_template() -> None:
    if _template.cache_info().currsize:
        drop_database(TEMPLATE)


def make_read_only(name: str) -> None:
    """Every new session of database `name` is read-only, and the open ones are ended (clients
    reconnect into read-only sessions): a database that refuses every write."""
    with _admin().connect() as conn:
        conn.execute(sa.text(f'ALTER DATABASE "{name}" SET default_transaction_read_only = on'))
        conn.execute(
            sa.text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :name"),
            {"name": name},
        )
