"""Orders invoiced and failed per hour, as bars of an inline SVG: no script, no build step."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from orchestrator.timefmt import human

HEIGHT, BAR, GAP = 120, 8, 2


def hourly_chart(finished: list[tuple[str, datetime]], now: datetime, hours: int) -> dict[str, Any]:
    """`finished`: (state, when it got there) of orders invoiced or failed in the last `hours`."""
    start = now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=hours - 1)
    counts = [{"invoiced": 0, "failed": 0} for _ in range(hours)]
    for state, when in finished:
        index = int((when - start).total_seconds() // 3600)
        if 0 <= index < hours and state in ("invoiced", "failed"):
            counts[index][state] += 1
    peak = max([c["invoiced"] + c["failed"] for c in counts] + [1])
    bars = []
    for n, c in enumerate(counts):
        h_invoiced = round(c["invoiced"] / peak * HEIGHT)
        h_failed = round(c["failed"] / peak * HEIGHT)
        bars.append(
            {
                "x": n * (BAR + GAP),
                "y_invoiced": HEIGHT - h_invoiced,
                "h_invoiced": h_invoiced,
                "y_failed": HEIGHT - h_invoiced - h_failed,
                "h_failed": h_failed,
                "invoiced": c["invoiced"],
                "failed": c["failed"],
                "label": human(start + timedelta(hours=n)),
            }
        )
    return {
        "hours": hours,
        "bars": bars,
        "bar": BAR,
        "width": hours * (BAR + GAP),
        "height": HEIGHT,
        "first": human(start),
        "last": human(start + timedelta(hours=hours - 1)),
    }
