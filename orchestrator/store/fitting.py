"""Texts cut to fit their columns, in one place.

PostgreSQL enforces VARCHAR lengths (SQLite does not): reasons, VTEX messages and history texts
are cut here when they are written, so a long VTEX message can never make a step's save fail.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa

from orchestrator.store.events import Event
from orchestrator.store.tables import EVENTS, ORDERS


def _max_lengths(table: sa.Table) -> dict[str, int]:
    limits = {}
    for column in table.columns:
        length = getattr(column.type, "length", None)  # sa.String, and sqlmodel's AutoString decorator
        if isinstance(length, int):
            limits[column.name] = length
    return limits


ORDER_LIMITS = _max_lengths(ORDERS)
EVENT_LIMITS = _max_lengths(EVENTS)


def fit(values: dict[str, Any], limits: dict[str, int]) -> dict[str, Any]:
    for name, limit in limits.items():
        value = values.get(name)
        if isinstance(value, str) and len(value) > limit:
            values[name] = value[: limit - 1] + "…"
    return values


def fit_events(events: Iterable[Event]) -> list[Event]:
    fitted = []
    for event in events:
        copy = event.copy()
        fit(copy, EVENT_LIMITS)  # type: ignore[arg-type]  # a TypedDict is a dict of these columns
        fitted.append(copy)
    return fitted
