"""How fast the client may call VTEX: a per-account requests-per-minute budget, and pauses after 429.

`RequestBudget` is what the client waits on before every request; every concurrent task of the
process shares one instance. `TokenBucket` spreads requests evenly instead of firing the whole
minute's budget at once (a burst of thousands of calls slows the store's Admin for everyone), and
is sized so that no 60-second window, even seen by VTEX a little skewed by network latency, ever
holds more than the budget:

    capacity (burst) = 2 seconds' worth         rate = (budget - capacity) / 61 s
    any 61 s window  <= capacity + rate * 61 = budget

A 429 pauses the account for its Retry-After (or a backoff when VTEX gave none). A caller that
would have to wait longer than it can afford (a claimed order must not outwait its lease) gets
`Throttled` at once and reschedules its order; that is never a failed attempt.

`TokenBucket` lives in the process (SQLite: one daemon). `SharedTokenBucket` keeps the bucket in the
database, so several daemons on PostgreSQL share one budget instead of each having its own; each
daemon draws a few tokens at a time and spends them within half a second.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Protocol

from orchestrator.vtex.errors import Throttled

WINDOW_SECONDS = 61.0  # one second more than VTEX's minute, for latency skew between requests
# Shared by several daemons, a token is granted by the database and spent a little later (a busy
# event loop, the database thread's queue), so the shared bucket keeps three seconds of slack.
SHARED_WINDOW_SECONDS = 63.0
BURST_SECONDS = 2.0
LOCAL_BATCH_SECONDS = 0.25  # a daemon draws about this much of the shared rate at a time
LOCAL_TOKEN_TTL = 0.25  # ...and spends it soon, or drops it


def bucket_shape(requests_per_minute: int, window: float = WINDOW_SECONDS) -> tuple[float, float]:
    """(capacity, tokens per second) such that capacity + `window` seconds of refill is the budget."""
    if requests_per_minute < 1:
        raise ValueError("the request budget must allow at least one request per minute")
    capacity = max(1.0, float(int(requests_per_minute * BURST_SECONDS / 60)))
    rate = max(1.0, requests_per_minute - capacity) / window
    return capacity, rate


class RequestBudget(Protocol):
    async def acquire(self, max_wait: float | None = None) -> None:
        """Return when one more request may be sent, or raise Throttled if that is beyond max_wait."""

    def pause(self, seconds: float | None) -> None:
        """VTEX said 429: send nothing for `seconds` (a default backoff when None)."""

    @property
    def paused_for(self) -> float:
        """Seconds left of the current pause (0 when not paused)."""


Sleep = Callable[[float], Awaitable[None]]


def _left(max_wait: float | None, waited: float) -> float | None:
    return None if max_wait is None else max(0.0, max_wait - waited)


class _Pauses:
    def __init__(self, clock: Callable[[], float], default_pause: float, sleep: Sleep) -> None:
        self._clock = clock
        self._sleep = sleep
        self._default_pause = default_pause
        self._paused_until = 0.0

    def pause(self, seconds: float | None) -> None:
        until = self._clock() + (self._default_pause if seconds is None else seconds)
        self._paused_until = max(self._paused_until, until)

    @property
    def paused_for(self) -> float:
        return max(0.0, self._paused_until - self._clock())

    async def wait_out_pause(self, max_wait: float | None) -> None:
        while (left := self.paused_for) > 0:
            if max_wait is not None and left > max_wait:
                raise Throttled(left)
            await self._sleep(left)


class Unlimited(_Pauses):
    """No budget; still honours pauses, because ignoring Retry-After is never acceptable."""

    def __init__(
        self,
        default_pause: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        super().__init__(clock, default_pause, sleep)

    async def acquire(self, max_wait: float | None = None) -> None:
        await self.wait_out_pause(max_wait)


class TokenBucket(_Pauses):
    def __init__(
        self,
        requests_per_minute: int,
        default_pause: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        super().__init__(clock, default_pause, sleep)
        self.requests_per_minute = requests_per_minute
        self.capacity, self.rate = bucket_shape(requests_per_minute)
        self._tokens = self.capacity
        self._refilled_at = clock()
        self._queue = asyncio.Lock()  # FIFO: waiters take turns instead of all waking for each token
        self._queued = 0  # callers waiting for the lock or holding it

    def _refill(self, now: float) -> None:
        self._tokens = min(self.capacity, self._tokens + (now - self._refilled_at) * self.rate)
        self._refilled_at = now

    def expected_wait(self) -> float:
        """Roughly how long a newcomer would wait: the pause, plus everyone queued ahead of it."""
        self._refill(self._clock())
        ahead = self._queued
        shortfall = ahead + 1 - self._tokens
        return self.paused_for + max(0.0, shortfall / self.rate)

    async def acquire(self, max_wait: float | None = None) -> None:
        if max_wait is not None and (wait := self.expected_wait()) > max_wait:
            raise Throttled(wait)
        self._queued += 1
        started = self._clock()
        try:
            async with self._queue:
                while True:
                    # A 429 that arrived while this caller queued counts against its max_wait too.
                    await self.wait_out_pause(_left(max_wait, self._clock() - started))
                    now = self._clock()
                    self._refill(now)
                    if self._tokens >= 1.0 - 1e-9:  # tolerate float rounding of the refill
                        self._tokens = max(0.0, self._tokens - 1.0)
                        return
                    await self._sleep((1.0 - self._tokens) / self.rate)
        finally:
            self._queued -= 1


TakeFn = Callable[[int, float, float], Awaitable[tuple[int, float]]]
ThrottleFn = Callable[[float], Awaitable[None]]


class RecordedTokenBucket(TokenBucket):
    """A daemon's own bucket whose 429 pauses are also written down (SQLite: one daemon, but
    `status` runs in another process and must see the pause)."""

    def __init__(self, requests_per_minute: int, record: ThrottleFn, default_pause: float = 60.0) -> None:
        super().__init__(requests_per_minute, default_pause)
        self._record = record
        self._records: set[asyncio.Future[None]] = set()

    def pause(self, seconds: float | None) -> None:
        super().pause(seconds)
        report = asyncio.ensure_future(self._record(self._default_pause if seconds is None else seconds))
        self._records.add(report)
        report.add_done_callback(self._records.discard)


class SharedTokenBucket(_Pauses):
    """The account's bucket kept in the database and shared by every daemon (see `take_budget`)."""

    def __init__(
        self,
        requests_per_minute: int,
        take: TakeFn,
        throttle: ThrottleFn,
        *,
        default_pause: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        super().__init__(clock, default_pause, sleep)
        self.requests_per_minute = requests_per_minute
        self.capacity, self.rate = bucket_shape(requests_per_minute, SHARED_WINDOW_SECONDS)
        self._batch = max(1, int(min(self.capacity / 2, self.rate * LOCAL_BATCH_SECONDS)))
        self._take = take
        self._throttle = throttle
        self._local = 0
        self._local_at = 0.0
        self._queue = asyncio.Lock()
        self._reports: set[asyncio.Future[None]] = set()

    def pause(self, seconds: float | None) -> None:
        """A 429 seen here pauses this daemon at once and, through the database, all the others."""
        super().pause(seconds)
        report = asyncio.ensure_future(self._throttle(self._default_pause if seconds is None else seconds))
        self._reports.add(report)
        report.add_done_callback(self._reports.discard)

    async def acquire(self, max_wait: float | None = None) -> None:
        started = self._clock()
        if max_wait is not None and self.paused_for > max_wait:
            raise Throttled(self.paused_for)
        async with self._queue:
            while True:
                await self.wait_out_pause(_left(max_wait, self._clock() - started))
                now = self._clock()
                if self._local >= 1 and now - self._local_at <= LOCAL_TOKEN_TTL:
                    self._local -= 1
                    return
                granted, wait = await self._take(self._batch, self.capacity, self.rate)
                if granted:
                    self._local, self._local_at = granted - 1, self._clock()
                    return
                waited = self._clock() - started
                if max_wait is not None and waited + wait > max_wait:
                    raise Throttled(wait)
                await self._sleep(max(wait, 0.005))
