"""The sandbox's rate limiter: requests per app key over a sliding minute, 429 with Retry-After."""

from __future__ import annotations

import math
from collections import deque


class SlidingMinute:
    def __init__(self, limit_per_minute: int) -> None:
        self.limit = limit_per_minute
        self._accepted: dict[str, deque[float]] = {}

    def check(self, key: str, now: float) -> float | None:
        """Admit one request (None), or return the seconds until one would be admitted."""
        window = self._accepted.setdefault(key, deque())
        while window and window[0] <= now - 60.0:
            window.popleft()
        if len(window) >= self.limit:
            return max(1.0, math.ceil(window[0] + 60.0 - now))
        window.append(now)
        return None
