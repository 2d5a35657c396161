"""Human durations for settings and CLI flags: `30m`, `1h30m`, `45s`, `2d`, or plain seconds."""

from __future__ import annotations

import math
import re
from datetime import timedelta

_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
# No setting or filter needs more; beyond it a typo (or `inf`) would overflow dates later on.
LONGEST = timedelta(days=3650)


def parse_duration(value: str | float | timedelta) -> timedelta:
    """Parse `value` or raise ValueError with a message that shows the accepted forms."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, int | float):
        if not math.isfinite(value):
            raise ValueError(f"{value!r} is not a duration; use seconds or forms like 45s, 30m, 1h30m, 2d")
        if value < 0:
            raise ValueError("a duration cannot be negative")
        if value > LONGEST.total_seconds():
            raise ValueError(f"{value:g} seconds is longer than the longest duration allowed (3650d)")
        return timedelta(seconds=value)
    text = value.strip().lower().replace(" ", "")
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        return parse_duration(seconds)
    pos, total = 0, 0.0
    for match in _PART.finditer(text):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        pos = match.end()
    if not text or pos != len(text):
        raise ValueError(f"{value!r} is not a duration; use seconds or forms like 45s, 30m, 1h30m, 2d")
    return parse_duration(total)


def format_duration(delta: timedelta | float | None) -> str:
    """Short, readable form for tables: `2d3h`, `14m05s`, `3.2s`."""
    if delta is None:
        return "-"
    seconds = delta.total_seconds() if isinstance(delta, timedelta) else float(delta)
    sign = "-" if seconds < 0 else ""
    seconds = abs(seconds)
    if seconds < 10:
        return f"{sign}{seconds:.1f}s"
    whole = int(seconds)
    days, rest = divmod(whole, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{sign}{days}d{hours}h"
    if hours:
        return f"{sign}{hours}h{minutes:02d}m"
    if minutes:
        return f"{sign}{minutes}m{secs:02d}s"
    return f"{sign}{secs}s"
