"""Database failures: our own errors, and any driver error turned into one line an operator can
act on (what the driver said, without parameters or a password, and what it means when we know)."""

from __future__ import annotations

import sqlalchemy as sa

from orchestrator.errors import Unavailable
from orchestrator.redaction import redact


class DatabaseError(Unavailable):
    """The database cannot be used as configured; the message says why."""


class DaemonAlreadyRunning(DatabaseError):
    """Another daemon holds this SQLite file."""


class NoDatabase(DatabaseError):
    """A command that only reads was pointed at a place where there is no orchestrator database."""

    exit_code = 2  # the settings point at the wrong place: a usage error


class BadDatabaseUrl(DatabaseError):
    """ORCHESTRATOR_DATABASE_URL is not a URL of a database we support."""

    exit_code = 2


# What the driver says, and what the operator should hear. Matched on the lower-cased message.
_EXPLANATIONS: tuple[tuple[str, str], ...] = (
    (
        "connection refused",
        "the database server refused the connection (is it running there?)",
    ),
    ("could not translate host name", "the database host name does not resolve"),
    ("name or service not known", "the database host name does not resolve"),
    ("failed to resolve host", "the database host name does not resolve"),
    ("timeout expired", "the database server did not answer in time"),
    ("password authentication failed", "the database rejected the user name or password"),
    ("no password supplied", "the database asks for a password and none was given"),
    ("terminating connection", "the database server closed the connection"),
    ("server closed the connection", "the database server closed the connection"),
    (
        "unable to open database file",
        "cannot open the SQLite file (does its directory exist?)",
    ),
    (
        "readonly database",
        "the SQLite database is read-only (check the file's and directory's permissions)",
    ),
    ("read-only", "the database is read-only"),
    ("disk is full", "the disk holding the database is full"),
    ("disk i/o error", "the disk holding the database failed to read or write"),
    ("file is not a database", "the file is not a SQLite database (or it is corrupt)"),
    ("malformed", "the SQLite database file is corrupt"),
    ("database is locked", "the SQLite database stayed locked by another process for too long"),
)


def is_database_error(exc: BaseException) -> bool:
    """A failure of the database itself (as opposed to a bug in the code that used it)."""
    return isinstance(exc, sa.exc.SQLAlchemyError | DatabaseError)


def is_connection_lost(exc: BaseException) -> bool:
    """The server ended a connection that was working (a restart, `pg_terminate_backend`)."""
    if not isinstance(exc, sa.exc.OperationalError | sa.exc.InterfaceError):
        return False
    if getattr(exc, "connection_invalidated", False):
        return True
    lowered = str(getattr(exc, "orig", exc)).lower()
    return "terminating connection" in lowered or "server closed the connection" in lowered


def explain(exc: BaseException) -> str:
    """One line about a database failure: what the driver said (first line, no parameters, no
    password), and what it means when we know."""
    original = getattr(exc, "orig", None) or exc
    said = (str(original).strip().splitlines() or [type(original).__name__])[0]
    said = redact(said)[:300]
    lowered = said.lower()
    for fragment, meaning in _EXPLANATIONS:
        if fragment in lowered:
            return f"{meaning} ({said})"
    if 'database "' in lowered and "does not exist" in lowered:
        return f"the database does not exist on that server ({said})"
    if 'role "' in lowered and "does not exist" in lowered:
        return f"the database user does not exist ({said})"
    return said
