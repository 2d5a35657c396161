"""The request budget: never more than the budget in any minute, smooth, honouring pauses."""

from __future__ import annotations

import asyncio
from bisect import bisect_left

import pytest

from orchestrator.vtex.budget import TokenBucket, Unlimited
from orchestrator.vtex.errors import Throttled

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
