"""The status report: counts per state with the age of the oldest order in each, and the orders
that look stuck, each with the facts an operator needs (the shape of `status --json`)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from orchestrator.repository import Repository
from orchestrator.rows import OrderRow
from states import ORDERED_STATES


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def stuck_entry(row: OrderRow, now: datetime) -> dict[str, Any]:
    return {
        "orderId": row.order_id,
        "state": row.state,
        "since": _iso(row.state_changed_at),
        "secondsInState": round((now - row.state_changed_at).total_seconds(), 1),
        "vtexStatus": row.vtex_status,
        "vtexStatusSeenAt": _iso(row.vtex_status_at),
        "lastError": row.last_error,
        "lastErrorCode": row.last_error_code,
        "attempts": row.attempts,
        "nextTryAt": _iso(row.next_run_at),
        "waitingFor": row.wait_reason,
        "openIntent": row.intent,
    }


def report(repository: Repository, now: datetime, stuck_after: timedelta) -> dict[str, Any]:
    counts = {c.state: c for c in repository.state_counts()}
    ordered = [str(s) for s in ORDERED_STATES] + sorted(set(counts) - {str(s) for s in ORDERED_STATES})
    oldest: dict[str, dict[str, Any]] = {}
    for state, entry in counts.items():
        if entry.oldest_since is not None:
            age = (now - entry.oldest_since).total_seconds()
            oldest[state] = {"since": _iso(entry.oldest_since), "ageSeconds": round(age, 1)}
    return {
        "generatedAt": now.isoformat(),
        "counts": {state: counts[state].count if state in counts else 0 for state in ordered},
        "oldest": oldest,
        "accounts": [
            {
                "account": p.account,
                "pausedUntil": _iso(p.until),
                "pausedSince": _iso(p.since),
                "reason": p.reason,
            }
            for p in repository.account_pauses()
            if p.until > now
        ],
        "stuckAfterSeconds": stuck_after.total_seconds(),
        "stuck": [stuck_entry(row, now) for row in repository.stuck(now, stuck_after)],
    }
