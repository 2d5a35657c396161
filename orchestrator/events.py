"""History rows (`order_events`) as the engine and the operator commands build them, and texts cut
to fit their columns.

PostgreSQL enforces VARCHAR lengths (SQLite does not): texts such as reasons and VTEX messages are
cut to fit here, in one place, so a long VTEX message can never make a step's save fail.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa

from orchestrator.models import EVENTS, ORDERS

EVENT_KEYS = (
    "order_pk",
    "at",
    "kind",
    "action",
    "from_state",
    "to_state",
    "attempt",
    "http_status",
    "duration_ms",
    "error_code",
    "message",
    "worker",
)


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


def new_event(order_pk: int, at: datetime, kind: str, **fields: Any) -> dict[str, Any]:
    """A history row with every column present (executemany needs uniform rows)."""
    event = dict.fromkeys(EVENT_KEYS)
    event.update(order_pk=order_pk, at=at, kind=kind, **fields)
    return fit(event, EVENT_LIMITS)
