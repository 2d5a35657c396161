"""How fast the client may call VTEX: a per-account requests-per-minute budget, and pauses after 429.

`RequestBudget` is what the client waits on before every request; every concurrent task of the
process shares one instance. `TokenBucket` spreads requests evenly instead of firing the whole
minute's budget at once (a burst of thousands of calls slows the store's Admin for everyone), and
is sized so that no 60-second window, even seen by VTEX a little skewed by network latency, ever
holds more than the budget:

    capacity (burst) = 2 seconds' worth         rate = (budget - capacity) / 61 s
    any 61 s window  <= capacity + rate * 61 = budget

A 429 pauses the account (its Retry-After, longer for 429s in a row); then one probe goes alone,
and only once it is answered do the others follow, on a ramp (`orchestrator.vtex.recovery`). A
caller that would have to wait longer than it can afford (a claimed order must not outwait its
lease) gets `Throttled` at once and reschedules its order; that is never a failed attempt.

`TokenBucket` lives in the process (SQLite: one daemon); its recovery is written down for `status`.
`SharedTokenBucket` keeps the bucket and the recovery in the database, so several daemons on
PostgreSQL share one budget and one probe instead of each having its own; each daemon draws a few
tokens at a time and spends them within half a second.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Protocol

from orchestrator.log import get_logger
from orchestrator.vtex.errors import Throttled
from orchestrator.vtex.recovery import (
    PROBE_TIMEOUT,
    Allowance,
    Grant,
    Recovery,
    allowance,
    answered,
    pause_for,
    ramp_rate,
    throttled,
    unanswered,
)

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


def in_background(work: Awaitable[None], running: set[asyncio.Future[None]]) -> None:
    """Record a change of the recovery without waiting for it. A record that fails (the
    database dropped the connection, as it may) is one warning line, never asyncio's "Task
    exception was never retrieved": the next change records the recovery again, and the account's
    own calls are held by this process meanwhile."""
    report = asyncio.ensure_future(work)
    running.add(report)

    def done(finished: asyncio.Future[None]) -> None:
        running.discard(finished)
        if finished.cancelled() or finished.exception() is None:
            return
        error = finished.exception()
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        get_logger().warning("could not record the account's recovery after a 429", error=first[:300])

    report.add_done_callback(done)


class RequestBudget(Protocol):
    async def acquire(self, max_wait: float | None = None) -> None:
        """Return when one more request may be sent, or raise Throttled if that is beyond max_wait."""

    def pause(self, seconds: float | None) -> None:
        """VTEX said 429: send nothing for a while (`seconds`: its Retry-After, if it gave one)."""

    def answered(self) -> None:
        """An answer that was not a 429 came back (it ends the probe after a pause)."""

    def unanswered(self) -> None:
        """A request got no answer at all (if it was the probe, another may go)."""

    @property
    def paused_for(self) -> float:
        """Seconds left of the current pause (0 when not paused)."""

    @property
    def recovery(self) -> Recovery:
        """Where the account stands after its last 429 (see `orchestrator.vtex.recovery`)."""

    def recovery_phase(self) -> tuple[str, float | None]:
        """(normal | paused | probing | ramping, the ramp's requests per second now)."""


Sleep = Callable[[float], Awaitable[None]]
RecordFn = Callable[[Recovery, float], Awaitable[None]]  # the state, and the clock's `now` it is on


def _left(max_wait: float | None, waited: float) -> float | None:
    return None if max_wait is None else max(0.0, max_wait - waited)


class _Recovering:
    """The recovery after 429s of one process's budget: a pause, one probe, a ramp (see
    `orchestrator.vtex.recovery`), recorded when it changes, for `status` and other daemons."""

    def __init__(
        self, clock: Callable[[], float], sleep: Sleep, record: RecordFn | None, probe_timeout: float
    ) -> None:
        self._clock = clock
        self._sleep = sleep
        self._record = record
        self._probe_timeout = probe_timeout
        self._recovery = Recovery()
        self._records: set[asyncio.Future[None]] = set()

    @property
    def recovery(self) -> Recovery:
        return self._recovery

    def _become(self, state: Recovery) -> None:
        if state == self._recovery:
            return
        self._recovery = state
        if self._record is not None:
            in_background(self._record(state, self._clock()), self._records)

    def pause(self, seconds: float | None) -> None:
        self._become(throttled(self._recovery, self._clock(), seconds))

    def answered(self) -> None:
        self._become(answered(self._recovery, self._clock()))

    def unanswered(self) -> None:
        self._become(unanswered(self._recovery))

    @property
    def paused_for(self) -> float:
        until = self._recovery.paused_until
        return 0.0 if until is None else max(0.0, until - self._clock())

    def recovery_phase(self) -> tuple[str, float | None]:
        now = self._clock()
        return self._recovery.phase(now), ramp_rate(self._recovery, now)

    def _allowance(self, rate: float) -> Allowance:
        state, allow = allowance(self._recovery, self._clock(), rate, self._probe_timeout)
        self._become(state)
        return allow


class Unlimited(_Recovering):
    """No budget; still honours 429s (a pause, the probe, the ramp): ignoring Retry-After is never
    acceptable, and neither is ending a pause with a burst."""

    RATE = 1000.0  # requests per second at which the ramp after a 429 is complete

    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        sleep: Sleep = asyncio.sleep,
        record: RecordFn | None = None,
        probe_timeout: float = PROBE_TIMEOUT,
    ) -> None:
        super().__init__(clock, sleep, record, probe_timeout)
        self._ramp = _Refill(clock)

    async def acquire(self, max_wait: float | None = None) -> None:
        started = self._clock()
        while True:
            allow = self._allowance(self.RATE)
            wait = allow.wait
            if not wait and not allow.probe and allow.rate is not None:
                wait = self._ramp.take(allow.rate, allow.capacity or 1.0)
            if not wait:
                return
            left = _left(max_wait, self._clock() - started)
            if left is not None and wait > left:
                raise Throttled(wait)
            await self._sleep(wait)


class _Refill:
    """A token bucket's level, refilled at whatever rate and size apply at the moment."""

    def __init__(self, clock: Callable[[], float], tokens: float = 0.0) -> None:
        self._clock = clock
        self.tokens = tokens
        self.refilled_at = clock()

    def hold(self) -> None:
        """Nothing accrues while nothing may be sent (a pause, a probe): the ramp starts empty."""
        self.tokens = 0.0
        self.refilled_at = self._clock()

    def take(self, rate: float, capacity: float) -> float:
        """Take one token: 0 when taken, else the seconds until one will be there."""
        now = self._clock()
        self.tokens = min(capacity, self.tokens + (now - self.refilled_at) * rate)
        self.refilled_at = now
        if self.tokens >= 1.0 - 1e-9:  # tolerate float rounding of the refill
            self.tokens = max(0.0, self.tokens - 1.0)
            return 0.0
        return (1.0 - self.tokens) / rate


class TokenBucket(_Recovering):
    def __init__(
        self,
        requests_per_minute: int,
        clock: Callable[[], float] = time.monotonic,
        sleep: Sleep = asyncio.sleep,
        record: RecordFn | None = None,
        probe_timeout: float = PROBE_TIMEOUT,
    ) -> None:
        super().__init__(clock, sleep, record, probe_timeout)
        self.requests_per_minute = requests_per_minute
        self.capacity, self.rate = bucket_shape(requests_per_minute)
        self._level = _Refill(clock, self.capacity)
        self._queue = asyncio.Lock()  # FIFO: waiters take turns instead of all waking for each token
        self._queued = 0  # callers waiting for the lock or holding it

    def expected_wait(self) -> float:
        """Roughly how long a newcomer would wait: the pause, plus everyone queued ahead of it."""
        level = min(self.capacity, self._level.tokens + (self._clock() - self._level.refilled_at) * self.rate)
        shortfall = self._queued + 1 - level
        return self.paused_for + max(0.0, shortfall / self.rate)

    async def acquire(self, max_wait: float | None = None) -> None:
        if max_wait is not None and (wait := self.expected_wait()) > max_wait:
            raise Throttled(wait)
        self._queued += 1
        started = self._clock()
        try:
            async with self._queue:
                while True:
                    allow = self._allowance(self.rate)
                    if allow.probe:
                        self._level.hold()
                        return
                    if allow.wait:
                        self._level.hold()
                        wait = allow.wait
                    else:
                        wait = self._level.take(allow.rate or self.rate, allow.capacity or self.capacity)
                    if not wait:
                        return
                    # A 429 that arrived while this caller queued counts against its max_wait too.
                    left = _left(max_wait, self._clock() - started)
                    if left is not None and wait > left:
                        raise Throttled(wait)
                    await self._sleep(wait)
        finally:
            self._queued -= 1


TakeFn = Callable[[int, float, float], Awaitable[Grant]]
ThrottleFn = Callable[[float | None], Awaitable[None]]
ProbeDoneFn = Callable[[bool], Awaitable[None]]  # True: answered (the ramp begins); False: no answer


class SharedTokenBucket:
    """The account's bucket and its recovery after 429s kept in the database and shared by every
    daemon (see `take_budget`): a 429 seen by one pauses all, exactly one of them sends the probe,
    and the ramp after it is one ramp for all of them, not one per daemon."""

    def __init__(
        self,
        requests_per_minute: int,
        take: TakeFn,
        throttle: ThrottleFn,
        probe_done: ProbeDoneFn,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.requests_per_minute = requests_per_minute
        self.capacity, self.rate = bucket_shape(requests_per_minute, SHARED_WINDOW_SECONDS)
        self._batch = max(1, int(min(self.capacity / 2, self.rate * LOCAL_BATCH_SECONDS)))
        self._take = take
        self._throttle = throttle
        self._probe_done = probe_done
        self._clock = clock
        self._sleep = sleep
        self._local = 0
        self._local_at = 0.0
        self._hold_until = 0.0  # after a 429 seen here, until the database has it
        self._probe_out = False
        self._seen = (Recovery(), 0.0, clock())  # the database's recovery, its now, ours then
        self._queue = asyncio.Lock()
        self._reports: set[asyncio.Future[None]] = set()

    def _report(self, work: Awaitable[None]) -> None:
        in_background(work, self._reports)

    def pause(self, seconds: float | None) -> None:
        """A 429 seen here stops this daemon at once and, through the database, all the others."""
        self._local = 0
        self._probe_out = False
        strikes = self._seen[0].strikes + 1
        self._hold_until = max(self._hold_until, self._clock() + pause_for(strikes, seconds))
        self._report(self._throttle(seconds))

    def answered(self) -> None:
        if self._probe_out:
            self._probe_out = False
            self._report(self._probe_done(True))

    def unanswered(self) -> None:
        if self._probe_out:
            self._probe_out = False
            self._report(self._probe_done(False))

    @property
    def recovery(self) -> Recovery:
        return self._seen[0]

    def recovery_phase(self) -> tuple[str, float | None]:
        recovery, db_now, seen_at = self._seen
        now = db_now + (self._clock() - seen_at)  # the database's clock, as last seen
        return recovery.phase(now), ramp_rate(recovery, now)

    @property
    def paused_for(self) -> float:
        recovery, db_now, seen_at = self._seen
        held = self._hold_until - self._clock()
        if recovery.paused_until is None:
            return max(0.0, held)
        return max(0.0, held, recovery.paused_until - db_now - (self._clock() - seen_at))

    async def acquire(self, max_wait: float | None = None) -> None:
        started = self._clock()
        async with self._queue:
            while True:
                now = self._clock()
                wait = self._hold_until - now
                if wait <= 0:
                    if self._local >= 1 and now - self._local_at <= LOCAL_TOKEN_TTL:
                        self._local -= 1
                        return
                    grant = await self._take(self._batch, self.capacity, self.rate)
                    self._seen = (grant.recovery, grant.now, self._clock())
                    if grant.granted:
                        self._probe_out = grant.probe
                        self._local, self._local_at = grant.granted - 1, self._clock()
                        return
                    wait = grant.wait
                left = _left(max_wait, self._clock() - started)
                if left is not None and wait > left:
                    raise Throttled(wait)
                await self._sleep(max(wait, 0.005))
