"""Connecting to the database, and the few things SQLite and PostgreSQL must do differently.

The store is written once against SQLAlchemy Core; a `DialectHooks` object carries the rest:
engine set-up (SQLite: WAL, a busy timeout, `BEGIN IMMEDIATE` so writers queue instead of failing
half-way), "is this a duplicate key?", the clock leases are kept by, and the single-daemon guard
that SQLite needs. Failures are `orchestrator.store.errors`.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from orchestrator.redaction import mask_url
from orchestrator.store.errors import BadDatabaseUrl, DaemonAlreadyRunning, DatabaseError, NoDatabase, explain

SQLITE_BUSY_TIMEOUT_MS = 30_000


StorageCheck = Callable[[], None]  # raises DatabaseError when the storage is no longer the one opened


def _no_check() -> None:
    return None


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

    @property
    def server_clock(self) -> bool:
        """Whether `now` is another machine's clock (worth measuring this host's offset to)."""
        return False

    def optimize(self, conn: sa.Connection) -> None:
        """Keep the planner's statistics fresh (PostgreSQL's autovacuum does this by itself)."""

    def has_invoice_number(self, invoices: Any, number: str) -> sa.ColumnElement[bool]:
        """SQL: the JSON list `invoices` (`orders.invoices`) holds an invoice numbered `number`."""
        raise NotImplementedError

    def customer_name(self, place_body: Any) -> sa.ColumnElement[str]:
        """SQL: "first last", the customer's name in the imported order's JSON body."""
        raise NotImplementedError

    @contextmanager
    def single_daemon(self, url: sa.URL) -> Iterator[StorageCheck]:
        """Hold whatever proves this daemon may run against `url`; yields a check to run on every
        tick that raises DatabaseError once the storage is no longer what was opened."""
        yield _no_check


class SqliteHooks(DialectHooks):
    def has_invoice_number(self, invoices: Any, number: str) -> sa.ColumnElement[bool]:
        entry = sa.func.json_each(invoices).table_valued("value").alias("entry")
        return sa.exists(
            sa.select(1).select_from(entry).where(sa.func.json_extract(entry.c.value, "$.number") == number)
        )

    def customer_name(self, place_body: Any) -> sa.ColumnElement[str]:
        def part(key: str) -> Any:
            return sa.func.coalesce(sa.func.json_extract(place_body, f"$.clientProfileData.{key}"), "")

        name: sa.ColumnElement[str] = part("firstName") + " " + part("lastName")
        return name

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

        database = engine.url.database
        if database and database != ":memory:" and not database.startswith("file:"):
            _guard_the_file(engine, Path(os.path.realpath(database)))

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
    def single_daemon(self, url: sa.URL) -> Iterator[StorageCheck]:
        """One daemon per database file, whatever path leads to it.

        The lock is taken beside the file's real path (a symlink leads to the same lock). A file
        with several hard links is refused: SQLite keeps its journal beside each name, so two names
        for one database can corrupt it, and a second daemon could lock the other name. While the
        daemon runs, the path must keep leading to the file it opened: a deleted or replaced file
        would take every later write with it, silently, so the check stops the daemon at once."""
        database = url.database
        if not database or database == ":memory:":
            yield _no_check
            return
        real = Path(os.path.realpath(database))
        opened = _identity(real)
        if opened is None:
            raise NoDatabase(f"no SQLite database at {real}")
        links = os.stat(real).st_nlink
        if links > 1:
            raise DatabaseError(
                f"{real} has {links} hard links: SQLite keeps its journal beside each name, so another "
                "name for the same file can corrupt it and would bypass the one-daemon lock; remove the "
                "other links (a symlink is fine)"
            )
        lock_path = real.with_name(real.name + ".lock")
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
                raise DaemonAlreadyRunning(
                    f"a daemon ({holder}) is already running on {real}. SQLite runs one daemon at a "
                    "time; to run several, use PostgreSQL (ORCHESTRATOR_DATABASE_URL=postgresql+psycopg://...)."
                ) from None
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"pid {os.getpid()}".encode(), 0)
            held = os.fstat(fd)

            def check() -> None:
                if _identity(real) != opened:
                    raise DatabaseError(
                        f"the database file {real} was deleted or replaced while the daemon ran; stopping, "
                        "since every later write would be lost (restore the file, then start again)"
                    )
                if _identity(lock_path) != (held.st_dev, held.st_ino):
                    raise DatabaseError(
                        f"the lock file {lock_path} was deleted or replaced while the daemon ran; stopping, "
                        "since a second daemon could now start on the same database"
                    )

            yield check
        finally:
            os.close(fd)  # closing releases the lock; the kernel also does so if we are killed


def _guard_the_file(engine: Engine, real: Path) -> None:
    """Every process (the daemon, `serve`, a command) checks, each time it takes a connection, that
    the path still leads to the file it opened. A deleted or replaced file would otherwise take
    every later write with it, silently: `serve` answered 201 for orders stored in a deleted file.
    One stat per checkout; the daemon's tick check (`single_daemon`) also stops the daemon."""
    opened: list[tuple[int, int] | None] = [_identity(real)]

    @sa.event.listens_for(engine, "connect")
    def _first_connect(_dbapi_conn: Any, _record: Any) -> None:
        if opened[0] is None:  # created by this connection (import, migrate, run on a new path)
            opened[0] = _identity(real)

    def still_the_file_opened() -> None:
        if opened[0] is not None and _identity(real) != opened[0]:
            raise DatabaseError(
                f"the database file {real} was deleted or replaced while this process ran; every "
                "later write would be lost (restore the file, then restart this process)"
            )

    @sa.event.listens_for(engine, "checkout")
    def _on_checkout(_dbapi_conn: Any, _record: Any, _proxy: Any) -> None:
        still_the_file_opened()

    @sa.event.listens_for(engine, "do_connect")
    def _before_connect(_dialect: Any, _record: Any, _args: Any, _params: Any) -> None:
        still_the_file_opened()  # before sqlite3 makes an empty file where the deleted one was


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        found = os.stat(path)
    except FileNotFoundError:
        return None
    return found.st_dev, found.st_ino


class PostgresHooks(DialectHooks):
    def has_invoice_number(self, invoices: Any, number: str) -> sa.ColumnElement[bool]:
        # An order without invoices holds JSON null, which json_array_elements refuses.
        listed = sa.case(
            (sa.func.json_typeof(invoices) == "array", invoices), else_=sa.cast(sa.literal("[]"), sa.JSON)
        )
        entry = sa.func.json_array_elements(listed).table_valued("value").alias("entry")
        return sa.exists(sa.select(1).select_from(entry).where(entry.c.value.op("->>")("number") == number))

    def customer_name(self, place_body: Any) -> sa.ColumnElement[str]:
        profile = place_body.op("->")("clientProfileData")

        def part(key: str) -> Any:
            return sa.func.coalesce(profile.op("->>")(key), "")

        return sa.cast(part("firstName"), sa.Text) + " " + sa.cast(part("lastName"), sa.Text)

    def is_duplicate_key(self, exc: sa.exc.IntegrityError) -> bool:
        return getattr(exc.orig, "sqlstate", None) == "23505"

    def now(self, conn: sa.Connection) -> datetime:
        # The server's clock, not this host's: daemons on several machines share one budget and
        # one set of leases, and their own clocks may disagree by minutes.
        value = conn.execute(sa.text("SELECT clock_timestamp()")).scalar_one()
        assert isinstance(value, datetime)
        return value.astimezone(UTC)

    @property
    def server_clock(self) -> bool:
        return True


def hooks_for(engine: Engine) -> DialectHooks:
    name = engine.dialect.name
    if name == "sqlite":
        return SqliteHooks(name)
    if name == "postgresql":
        return PostgresHooks(name)
    raise DatabaseError(f"unsupported database {name!r}: use SQLite or PostgreSQL")


_SUPPORTED = ("sqlite", "postgresql")


def normalise_url(url: str) -> sa.URL:
    """Parse the URL; plain `postgresql://` means psycopg 3, the driver we ship."""
    try:
        parsed = sa.make_url(url)
    except sa.exc.ArgumentError:
        raise BadDatabaseUrl(
            f"ORCHESTRATOR_DATABASE_URL is not a database URL: {mask_url(url)!r} "
            "(expected sqlite:///path/to/file.db or postgresql://user@host/database)"
        ) from None
    if parsed.drivername in {"postgresql", "postgres"}:
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.get_backend_name() not in _SUPPORTED:
        raise BadDatabaseUrl(
            f"unsupported database {parsed.get_backend_name()!r} in ORCHESTRATOR_DATABASE_URL: "
            "use sqlite:///path/to/file.db or postgresql://user@host/database"
        )
    return parsed


def create_db_engine(url: str, *, pool_size: int = 5, create: bool = True) -> tuple[Engine, DialectHooks]:
    """The engine for `url`. With `create=False` (commands that only read or change orders), a
    SQLite file must already exist: a mistyped path must not silently become an empty database
    that reports that all is well."""
    parsed = normalise_url(url)
    kwargs: dict[str, Any] = {"hide_parameters": True}  # no order body in any error message
    if parsed.get_backend_name() == "sqlite":
        _check_sqlite_path(parsed.database, create)
        kwargs["connect_args"] = {"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}
    else:
        kwargs.update(pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True)
    try:
        engine = sa.create_engine(parsed, **kwargs)
    except (sa.exc.ArgumentError, sa.exc.NoSuchModuleError) as exc:
        raise BadDatabaseUrl(f"cannot use ORCHESTRATOR_DATABASE_URL: {explain(exc)}") from None
    hooks = hooks_for(engine)
    hooks.configure(engine)
    return engine, hooks


def _check_sqlite_path(database: str | None, create: bool) -> None:
    """What SQLite would only report as "unable to open database file", said plainly up front.

    SQLite writes its journal (`-wal`, `-shm`) beside the database, so even a reader needs the
    directory writable; `os.access` also sees the immutable flag that stops root."""
    if not database or database == ":memory:" or database.startswith("file:"):
        return
    path = Path(database)
    if path.is_dir():
        raise BadDatabaseUrl(f"{path} is a directory; ORCHESTRATOR_DATABASE_URL must name a SQLite file")
    parent = path.resolve().parent
    if not path.exists():
        if not create:
            raise NoDatabase(
                f"no database at {path.resolve()}: check ORCHESTRATOR_DATABASE_URL "
                "(only `import`, `migrate`, `run` and `token create` create a database)"
            )
        if not parent.is_dir():
            raise BadDatabaseUrl(f"cannot create the SQLite database {path}: no directory {parent}")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise DatabaseError(
            f"the directory {parent} is read-only: SQLite writes its journal beside the database file"
        )
    if path.exists() and not os.access(path, os.R_OK | os.W_OK):
        raise DatabaseError(f"the SQLite database {path} is read-only (or unreadable) for this user")
