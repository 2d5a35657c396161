"""How fast the client may call VTEX: a per-account requests-per-minute budget, and pauses after 429.

`RequestBudget` is what the client waits on before every request. This module holds the in-process
implementation; every concurrent task of the process shares one instance.
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol


class RequestBudget(Protocol):
    async def acquire(self) -> None:
        """Return when one more request may be sent."""

    def pause(self, seconds: float | None) -> None:
        """VTEX said 429: send nothing for `seconds` (a default backoff when None)."""


class Unlimited:
    """No budget; still honours pauses, because ignoring Retry-After is never acceptable."""

    def __init__(self, default_pause: float = 5.0) -> None:
        self._paused_until = 0.0
        self._default_pause = default_pause

    async def acquire(self) -> None:
        delay = self._paused_until - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)

    def pause(self, seconds: float | None) -> None:
        until = time.monotonic() + (self._default_pause if seconds is None else seconds)
        self._paused_until = max(self._paused_until, until)
