"""History rows (`order_events`), as the engine and the operator commands build them.

Plain dictionaries with every column present (the store inserts many at once, and executemany
needs uniform rows). The store cuts their texts to fit its columns when it writes them
(`orchestrator.store.fitting`), so nothing here knows about the database.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

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
    "detail",
)


def new_event(order_pk: int, at: datetime, kind: str, **fields: Any) -> dict[str, Any]:
    """A history row: `kind` is import, transition, call, reconcile, error or note."""
    event: dict[str, Any] = dict.fromkeys(EVENT_KEYS)
    event.update(order_pk=order_pk, at=at, kind=kind, **fields)
    return event
