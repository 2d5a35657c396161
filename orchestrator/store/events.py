"""History rows (`order_events`), as the engine and the operator commands build them.

Typed dictionaries with every column present (the store inserts many at once, and executemany
needs uniform rows); `new_event` names each field, so a misspelt one is an error, not a silently
dropped column. The store cuts their texts to fit its columns when it writes them
(`orchestrator.store.fitting`), so nothing here knows about the database.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, TypedDict


class Event(TypedDict):
    """One history row before it is stored: `kind` is import, transition, call, reconcile, error or
    note; `action` the trigger, the VTEX call or the operator's action it records."""

    order_pk: int
    at: datetime
    kind: str
    action: str | None
    from_state: str | None
    to_state: str | None
    attempt: int | None
    http_status: int | None
    duration_ms: float | None
    error_code: str | None
    message: str | None
    worker: str | None
    detail: dict[str, Any] | None


class StoredEvent(Event):
    """A history row as read back, with its id (the order of the history)."""

    id: int


EVENT_KEYS = tuple(Event.__annotations__)


def new_event(
    order_pk: int,
    at: datetime,
    kind: str,
    *,
    action: str | None = None,
    from_state: str | None = None,
    to_state: str | None = None,
    attempt: int | None = None,
    http_status: int | None = None,
    duration_ms: float | None = None,
    error_code: str | None = None,
    message: str | None = None,
    worker: str | None = None,
    detail: dict[str, Any] | None = None,
) -> Event:
    """A history row."""
    return Event(
        order_pk=order_pk,
        at=at,
        kind=kind,
        action=action,
        from_state=from_state,
        to_state=to_state,
        attempt=attempt,
        http_status=http_status,
        duration_ms=duration_ms,
        error_code=error_code,
        message=message,
        worker=worker,
        detail=detail,
    )
