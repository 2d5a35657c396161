"""Time in one place: aware UTC datetimes everywhere, and a column type that stores them as such.

SQLite has no time zone type and returns naive values; PostgreSQL returns aware ones. `UtcDateTime`
makes both backends hand back aware UTC datetimes, so comparisons never mix the two kinds.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect


def utcnow() -> datetime:
    return datetime.now(UTC)


class OffsetClock:
    """This host's clock, corrected to the database server's.

    Several daemons on PostgreSQL schedule orders for each other (`next_run_at`) and keep leases
    by one clock. Leases are compared with the server's clock in SQL; everything a step schedules
    uses this corrected clock, so a host whose clock is minutes off neither delays nor hurries the
    orders it touches. The offset is measured now and then (`sync`); until then it is zero."""

    def __init__(self, base: Callable[[], datetime] = utcnow) -> None:
        self._base = base
        self.offset = timedelta(0)

    def __call__(self) -> datetime:
        return self._base() + self.offset

    def sync(self, server_now: datetime, asked_at: datetime, answered_at: datetime) -> timedelta:
        """Take the server's time, read between `asked_at` and `answered_at` (our clock)."""
        self.offset = server_now - (asked_at + (answered_at - asked_at) / 2)
        return self.offset

    def measure(self, server_now: Callable[[], datetime]) -> timedelta:
        asked = self._base()
        value = server_now()
        return self.sync(value, asked, self._base())


class UtcDateTime(sa.types.TypeDecorator[datetime]):
    impl = sa.DateTime(timezone=True)
    cache_ok = True

    # SQLite stores text. SQLAlchemy's own DATETIME processors format and parse it in Python with a
    # regular expression; on the daemon's hot path (every claim and every save of a step) that was
    # measurable, so for SQLite the same text is written and read with the C isoformat functions.
    # The format stays SQLAlchemy's ("YYYY-MM-DD HH:MM:SS.ffffff", always six decimals), because
    # SQLite compares these columns as strings.

    def bind_processor(self, dialect: Dialect) -> Any:
        if dialect.name != "sqlite":
            return super().bind_processor(dialect)

        def process(value: datetime | None) -> str | None:
            if value is None:
                return None
            if value.tzinfo is None:
                raise ValueError("naive datetime given to a UTC column")
            return value.astimezone(UTC).replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds")

        return process

    def result_processor(self, dialect: Dialect, coltype: Any) -> Any:
        if dialect.name != "sqlite":
            return super().result_processor(dialect, coltype)

        def process(value: str | None) -> datetime | None:
            return None if value is None else datetime.fromisoformat(value).replace(tzinfo=UTC)

        return process

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if isinstance(value, str):
            value = datetime.fromisoformat(value)
        if not isinstance(value, datetime):
            raise TypeError(f"unexpected value {value!r} in a datetime column")
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)
