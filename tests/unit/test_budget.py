"""The request budget: never more than the budget in any minute, smooth, honouring pauses."""

from __future__ import annotations

import asyncio
import heapq
from bisect import bisect_left
from collections.abc import Coroutine
from typing import Any

import pytest
from structlog.testing import capture_logs

from orchestrator.vtex.budget import TokenBucket, Unlimited
from orchestrator.vtex.errors import Throttled
from orchestrator.vtex.recovery import PROBE_TIMEOUT

pytestmark = pytest.mark.anyio


class SimulatedTime:
    """A clock that only moves when someone sleeps: lets a budget run for hours in milliseconds."""

    def __init__(self) -> None:
        self.now = 1000.0

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += max(0.0, seconds)
        await asyncio.sleep(0)


def max_in_window(times: list[float], window: float) -> int:
    return max(i - bisect_left(times, t - window + 1e-9) + 1 for i, t in enumerate(times))


@pytest.mark.parametrize("rpm", [1, 7, 60, 600, 6000])
async def test_no_minute_ever_holds_more_than_the_budget(rpm: int) -> None:
    """Whatever the budget, no 60 s window (or 61 s, for skew) holds more requests than it."""
    time = SimulatedTime()
    bucket = TokenBucket(rpm, clock=time.clock, sleep=time.sleep)
    sent = []
    for _ in range(rpm * 3 + 5):
        await bucket.acquire()
        sent.append(time.now)
    assert max_in_window(sent, 60.0) <= rpm
    assert max_in_window(sent, 61.0) <= rpm


async def test_the_budget_is_used_nearly_in_full() -> None:
    """Over ten minutes of constant demand the bucket sends at least 90 % of what the budget allows."""
    time = SimulatedTime()
    bucket = TokenBucket(600, clock=time.clock, sleep=time.sleep)
    start, sent = time.now, 0
    while True:
        await bucket.acquire()
        if time.now - start >= 600:
            break
        sent += 1
    assert sent >= 0.9 * 600 * 10


async def test_requests_are_spread_not_fired_in_a_burst() -> None:
    """After a two-second burst, requests come at the budget's pace, not all at once."""
    time = SimulatedTime()
    bucket = TokenBucket(600, clock=time.clock, sleep=time.sleep)
    sent = []
    for _ in range(100):
        await bucket.acquire()
        sent.append(time.now - 1000.0)
    assert sent[19] == 0.0  # capacity: 2 s worth of 600/min = 20
    assert sent[99] == pytest.approx(80 / bucket.rate, rel=0.01)


async def test_a_pause_holds_every_request_for_its_length() -> None:
    """After a 429 with Retry-After 7, nothing is sent for 7 seconds."""
    time = SimulatedTime()
    bucket = TokenBucket(600, clock=time.clock, sleep=time.sleep)
    await bucket.acquire()
    paused_at = time.now
    bucket.pause(7)
    await bucket.acquire()
    assert time.now - paused_at >= 7


async def test_a_pause_without_retry_after_uses_the_default_backoff() -> None:
    """VTEX's advice when a 429 carries no Retry-After is a one-minute backoff."""
    time = SimulatedTime()
    bucket = Unlimited(clock=time.clock, sleep=time.sleep)
    bucket.pause(None)
    assert bucket.paused_for == 60.0


async def test_a_caller_that_cannot_wait_that_long_is_throttled_at_once() -> None:
    """Waiting past max_wait would outlive the order's lease: Throttled says when to come back."""
    time = SimulatedTime()
    bucket = TokenBucket(600, clock=time.clock, sleep=time.sleep)
    bucket.pause(30)
    with pytest.raises(Throttled) as caught:
        await bucket.acquire(max_wait=10)
    assert caught.value.retry_after == pytest.approx(30)
    assert time.now == 1000.0, "a throttled caller must not have waited"


async def test_concurrent_callers_share_one_budget() -> None:
    """Many tasks acquiring at once still respect the one budget of the account."""
    time = SimulatedTime()
    bucket = TokenBucket(120, clock=time.clock, sleep=time.sleep)
    sent: list[float] = []

    async def caller() -> None:
        for _ in range(10):
            await bucket.acquire()
            sent.append(time.now)

    await asyncio.gather(*(caller() for _ in range(30)))
    sent.sort()
    assert len(sent) == 300 and max_in_window(sent, 60.0) <= 120


class VirtualTime:
    """A clock for many concurrent callers: time moves to the next sleeper's wake-up only once
    every caller that can run at this instant has run (a small discrete-event loop)."""

    def __init__(self) -> None:
        self.now = 1000.0
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = 0

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        woken: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._seq += 1
        heapq.heappush(self._sleepers, (self.now + max(0.0, seconds), self._seq, woken))
        await woken

    async def run(self, *callers: Coroutine[Any, Any, None]) -> None:
        tasks = [asyncio.ensure_future(c) for c in callers]
        while not all(t.done() for t in tasks):
            for _ in range(50):  # let everything runnable at this instant run
                await asyncio.sleep(0)
            if self._sleepers:
                at, _seq, woken = heapq.heappop(self._sleepers)
                self.now = max(self.now, at)
                woken.set_result(None)
        for task in tasks:
            task.result()


async def test_a_429_storm_gets_one_burst_then_one_probe_per_pause_then_a_ramp() -> None:
    """20 callers against a VTEX that answers 429 (Retry-After 2 s) to everything for 20 s: the
    first burst, then a single request at the end of each pause, the pauses doubling (2, 2, 4,
    8 s...); once VTEX answers again, one request a second, then two, four... never a burst."""
    time = VirtualTime()
    bucket = TokenBucket(3000, clock=time.clock, sleep=time.sleep)
    start = time.now
    sent: list[float] = []

    async def caller() -> None:
        while time.now - start < 40:
            await bucket.acquire()
            at = time.now - start
            sent.append(at)
            await time.sleep(0.01)  # on the wire
            if at < 20:
                bucket.pause(2)
            else:
                bucket.answered()

    await time.run(*(caller() for _ in range(20)))
    storm = [t for t in sent if t < 20]
    burst = [t for t in storm if t == 0.0]
    probes = sorted(t for t in storm if t > 0)
    assert len(burst) == 20  # everything in flight before the first 429 came back
    assert probes == pytest.approx([2.0, 4.0, 8.0, 16.0], abs=0.3)
    after = sorted(t for t in sent if t >= 20)
    first_second = [t for t in after if t < after[0] + 1]
    assert len(first_second) <= 2  # the probe that passed, then one a second
    per_second = [sum(1 for t in after if after[0] + k <= t < after[0] + k + 1) for k in range(1, 6)]
    assert per_second == sorted(per_second) and per_second[-1] >= 8  # doubling back up


async def test_a_probe_whose_answer_never_comes_lets_another_go_after_a_while() -> None:
    """The probe after a pause got no answer at all (a lost connection): after PROBE_TIMEOUT
    another request may probe, instead of the account waiting for ever."""
    time = SimulatedTime()
    bucket = Unlimited(clock=time.clock, sleep=time.sleep)
    bucket.pause(1)
    await bucket.acquire()  # the probe, at the end of the pause
    probed_at = time.now
    await bucket.acquire()  # waits: no answer came
    assert time.now - probed_at == pytest.approx(PROBE_TIMEOUT, abs=0.3)


async def test_a_probe_that_got_no_answer_lets_the_next_request_probe_at_once() -> None:
    """The probe timed out or its connection dropped: it told nothing about VTEX, so the next
    request is the probe, without waiting for the probe timeout."""
    time = SimulatedTime()
    bucket = TokenBucket(600, clock=time.clock, sleep=time.sleep)
    bucket.pause(1)
    await bucket.acquire()  # the probe
    bucket.unanswered()
    probed_at = time.now
    await bucket.acquire()
    assert time.now == probed_at and bucket.recovery.probe_at == probed_at


async def test_a_recovery_record_the_database_refuses_is_one_warning_not_a_stray_traceback() -> None:
    """Recording the pause after a 429 runs in the background; when the database drops the
    connection then, the failure is one warning line and nothing is left unretrieved."""

    async def refuse(_state: object, _now: float) -> None:
        raise ConnectionError("server closed the connection unexpectedly")

    bucket = TokenBucket(60, record=refuse)
    with capture_logs() as logs:
        bucket.pause(5.0)
        await asyncio.sleep(0.01)
    warnings = [e for e in logs if e["log_level"] == "warning"]
    assert [e["event"] for e in warnings] == ["could not record the account's recovery after a 429"]
    assert "server closed the connection" in warnings[0]["error"]
