"""Connecting to the database, and the few things SQLite and PostgreSQL must do differently.

The repository is written once against SQLAlchemy Core; a `DialectHooks` object carries the rest:
engine set-up (SQLite: WAL, a busy timeout, `BEGIN IMMEDIATE` so writers queue instead of failing
half-way), "is this a duplicate key?", and the single-daemon guard that SQLite needs.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

SQLITE_BUSY_TIMEOUT_MS = 30_000


class DatabaseError(Exception):
    """The database cannot be used as configured; the message says why."""


class DaemonAlreadyRunning(DatabaseError):
    """Another daemon holds this SQLite file."""


@dataclass(frozen=True)
class DialectHooks:
    name: str

    def configure(self, engine: Engine) -> None:
        """Per-connection settings."""

    def is_duplicate_key(self, exc: sa.exc.IntegrityError) -> bool:
        raise NotImplementedError

    def now(self, conn: sa.Connection) -> datetime:
        """The clock shared state is kept by (one clock for all daemons, whatever their hosts)."""
        return datetime.now(UTC)

    def optimize(self, conn: sa.Connection) -> None:
        """Keep the planner's statistics fresh (PostgreSQL's autovacuum does this by itself)."""

    @contextmanager
    def single_daemon(self, url: sa.URL) -> Iterator[None]:
        """Hold whatever proves this daemon may run against `url`."""
        yield


class SqliteHooks(DialectHooks):
    def configure(self, engine: Engine) -> None:
        @sa.event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn: Any, _record: Any) -> None:
            # Take transaction control away from the sqlite3 module so BEGIN IMMEDIATE is ours.
            dbapi_conn.isolation_level = None
            cursor = dbapi_conn.cursor()
            cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
            cursor.execute("PRAGMA journal_mode = WAL")
            # FULL: a committed intent survives a power cut, not only a process crash.
            cursor.execute("PRAGMA synchronous = FULL")
            cursor.execute("PRAGMA foreign_keys = ON")
            cursor.close()

        @sa.event.listens_for(engine, "begin")
        def _on_begin(conn: sa.Connection) -> None:
            # Take the write lock up front: a transaction that reads then writes can then never
            # fail with SQLITE_BUSY half-way; it waits (busy_timeout) before doing anything.
            conn.exec_driver_sql("BEGIN IMMEDIATE")

    def is_duplicate_key(self, exc: sa.exc.IntegrityError) -> bool:
        return "UNIQUE constraint failed" in str(exc.orig)

    def optimize(self, conn: sa.Connection) -> None:
        # Without statistics SQLite counted a million orders through the wrong index, ten times
        # slower. PRAGMA optimize refreshes them only where they are stale (cheap when not).
        conn.exec_driver_sql("PRAGMA analysis_limit = 1000")  # sampled statistics: bounded cost
        conn.exec_driver_sql("PRAGMA optimize")

    @contextmanager
    def single_daemon(self, url: sa.URL) -> Iterator[None]:
        database = url.database
        if not database or database == ":memory:":
            yield
            return
        lock_path = Path(database).resolve().with_name(Path(database).name + ".lock")
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
                raise DaemonAlreadyRunning(
                    f"a daemon ({holder}) is already running on {database}. SQLite runs one daemon at a "
                    "time; to run several, use PostgreSQL (ORCHESTRATOR_DATABASE_URL=postgresql+psycopg://...)."
                ) from None
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"pid {os.getpid()}".encode(), 0)
            yield
        finally:
            os.close(fd)  # closing releases the lock; the kernel also does so if we are killed


class PostgresHooks(DialectHooks):
    def is_duplicate_key(self, exc: sa.exc.IntegrityError) -> bool:
        return getattr(exc.orig, "sqlstate", None) == "23505"

    def now(self, conn: sa.Connection) -> datetime:
        # The server's clock, not this host's: daemons on several machines share one budget.
        value = conn.execute(sa.text("SELECT clock_timestamp()")).scalar_one()
        assert isinstance(value, datetime)
        return value.astimezone(UTC)


def hooks_for(engine: Engine) -> DialectHooks:
    name = engine.dialect.name
    if name == "sqlite":
        return SqliteHooks(name)
    if name == "postgresql":
        return PostgresHooks(name)
    raise DatabaseError(f"unsupported database {name!r}: use SQLite or PostgreSQL")


def normalise_url(url: str) -> sa.URL:
    """Parse the URL; plain `postgresql://` means psycopg 3, the driver we ship."""
    try:
        parsed = sa.make_url(url)
    except sa.exc.ArgumentError as exc:
        raise DatabaseError(f"ORCHESTRATOR_DATABASE_URL is not a database URL: {url!r}") from exc
    if parsed.drivername in {"postgresql", "postgres"}:
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def create_db_engine(url: str, *, pool_size: int = 5) -> tuple[Engine, DialectHooks]:
    parsed = normalise_url(url)
    kwargs: dict[str, Any] = {}
    if parsed.get_backend_name() == "sqlite":
        kwargs["connect_args"] = {"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}
    else:
        kwargs.update(pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True)
    engine = sa.create_engine(parsed, **kwargs)
    hooks = hooks_for(engine)
    hooks.configure(engine)
    return engine, hooks
