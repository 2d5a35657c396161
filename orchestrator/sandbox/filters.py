"""What the Orders Feed and the Hook share on VTEX's side: the filter of their configuration
(`FromWorkflow` with a list of statuses, or `FromOrders` with a JSONata expression), which
configurations VTEX takes, which status changes a filter lets through, and their deletion when
idle. Kept once so that the feed and the Hook can never judge one change differently."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

FILTER_TYPES = ("FromWorkflow", "FromOrders")


def filter_refusal(flt: Any) -> str | None:
    """Why VTEX would refuse this filter (409 for mixing both kinds: the text says CONFLICT)."""
    if not isinstance(flt, Mapping) or flt.get("type") not in FILTER_TYPES:
        return "filter.type must be FromWorkflow or FromOrders"
    if flt.get("status") is not None and flt.get("expression") is not None:
        return "CONFLICT: a filter takes either status (FromWorkflow) or expression (FromOrders)"
    statuses = flt.get("status")
    if statuses is not None and (
        not isinstance(statuses, list) or not all(isinstance(s, str) for s in statuses)
    ):
        return "filter.status must be a list of status names"
    return None


def kept(flt: Mapping[str, Any]) -> dict[str, Any]:
    """The filter as VTEX keeps it (and shows it back)."""
    statuses = flt.get("status")
    return {"type": flt["type"], "status": list(statuses) if statuses is not None else None}


def lets_through(flt: Mapping[str, Any], last_state: str | None, state: str) -> bool:
    """Whether a change from `last_state` to `state` is news under the filter."""
    wanted = flt["status"]
    return last_state != state and (wanted is None or state in wanted)


def idle_too_long(last_news: float | None, configured_at: float, now: float, limit: float) -> bool:
    """VTEX deletes a configuration nothing reached for `limit` seconds."""
    return now - (last_news if last_news is not None else configured_at) > limit
