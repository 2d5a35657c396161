"""The two ways a time is written for people and scripts, and no third.

- JSON and CSV: ISO 8601 in UTC with a `Z` and milliseconds, `2026-12-04T20:39:43.123Z`: what
  JavaScript's `Date.toISOString()` writes, sortable as text, and parsed by every language.
- The terminal: `2026-12-04 20:39:43Z`, to the second, with ages and waits as durations beside it.

Kept free of any import heavier than `datetime`, since read-only commands load it first.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import overload


@overload
def iso(value: datetime) -> str: ...
@overload
def iso(value: None) -> None: ...
@overload
def iso(value: datetime | None) -> str | None: ...
def iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    utc = value.astimezone(UTC) if value.tzinfo else value
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def human(value: datetime | None) -> str:
    if value is None:
        return "-"
    utc = value.astimezone(UTC) if value.tzinfo else value
    return utc.strftime("%Y-%m-%d %H:%M:%SZ")
