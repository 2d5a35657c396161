"""After a 429: a pause, then one probe, then a ramp back to the full budget, never a burst.

VTEX's guidance after a 429 is to stop and back off (a minute is what it recommends). Ending a
pause by releasing every waiting order at once is exactly the burst that got the account throttled:
20 due orders sent 60 requests in 7 s into a 429 storm. So an account's sending goes through four
phases, the same for one daemon (`TokenBucket`, in memory) and for several sharing PostgreSQL
(`take_budget`, in `vtex_accounts`):

    normal ──429──► paused ──pause over──► probing ──probe answered, not 429──► ramping ──► normal
                      ▲                       │                                    │
                      └─────────429───────────┴──────────────────429───────────────┘

- paused: nothing is sent for the pause: VTEX's Retry-After, and longer for every 429 in a row
  (1 s, 2 s, 4 s, ... doubling up to a minute), never shorter than VTEX asked;
- probing: exactly one request goes; everyone else waits for its answer (if it gets none, a timeout
  or a dropped connection, the next request probes; if its sender died, another goes after the
  probe timeout: VTEX_TIMEOUT and a second);
- ramping: the allowed rate starts at one request a second and doubles every second until it
  reaches the budget's own rate. The probe's answer ended the run of 429s "in a row": a 429
  during the ramp pauses again, for VTEX's Retry-After.

Times are seconds on one clock (`time.monotonic()` in a process, the database server's clock as
epoch seconds in the shared table). Everything here is pure: a state and a time in, a decision out.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace

FIRST_PAUSE = 1.0  # seconds, after the first 429 of a run (VTEX's Retry-After if longer)
LONGEST_PAUSE = 60.0  # VTEX's recommended back-off; a Retry-After asking for more still wins
DEFAULT_RETRY_AFTER = 60.0  # a 429 without Retry-After: VTEX's advice
PROBE_TIMEOUT = 30.0  # a probe whose answer never came (its sender died): then another may go
PROBE_WAIT = 0.25  # how often those waiting look whether the probe was answered
RAMP_START = 1.0  # requests per second just after the probe passed; doubles every second


@dataclass(frozen=True)
class Recovery:
    """Where an account stands after its last 429 (all clear: sending normally)."""

    strikes: int = 0  # 429s in a row: to probes, with no answer in between
    paused_until: float | None = None  # set by a 429; stays set until the ramp completes
    probe_at: float | None = None  # when the one probe after the pause was let go
    ramp_from: float | None = None  # when the probe was answered and the ramp began

    def phase(self, now: float) -> str:
        if self.paused_until is None:
            return "normal"
        if now < self.paused_until:
            return "paused"
        return "ramping" if self.ramp_from is not None else "probing"


@dataclass(frozen=True)
class Allowance:
    """What may be sent now: nothing for `wait` seconds, the one probe, or requests at up to
    `rate` per second with bursts of `capacity` (None: the budget's own)."""

    wait: float = 0.0
    probe: bool = False
    rate: float | None = None
    capacity: float | None = None


def pause_for(strikes: int, retry_after: float | None) -> float:
    """How long the `strikes`-th 429 in a row holds every call: what VTEX asked, and at least a
    pause that doubles with each 429 in a row, up to a minute."""
    asked = DEFAULT_RETRY_AFTER if retry_after is None else max(0.0, retry_after)
    return max(asked, min(LONGEST_PAUSE, FIRST_PAUSE * 2.0 ** max(0, strikes - 1)))


def throttled(state: Recovery, now: float, retry_after: float | None) -> Recovery:
    """A 429 was answered: pause (never shortening a pause already running), probe again after.

    A 429 that arrives during a pause answers a request sent before it began (one of a burst in
    flight together): it is the same throttle, not one more in a row."""
    pausing = state.paused_until is not None and now < state.paused_until
    strikes = state.strikes if pausing else state.strikes + 1
    until = now + pause_for(strikes, retry_after)
    if state.paused_until is not None and state.paused_until > until:
        until = state.paused_until
    return Recovery(strikes=strikes, paused_until=until)


def answered(state: Recovery, now: float) -> Recovery:
    """An answer that was not a 429 came: if a probe was out, the ramp begins, and the 429s are
    no longer "in a row" (the next one pauses for VTEX's Retry-After again, not longer)."""
    if state.probe_at is None or state.ramp_from is not None:
        return state
    return replace(state, strikes=0, probe_at=None, ramp_from=now)


def unanswered(state: Recovery) -> Recovery:
    """A request got no answer at all (a timeout, a dropped connection): if it was the probe, it
    told nothing, and the next request may probe at once."""
    if state.probe_at is None or state.ramp_from is not None:
        return state
    return replace(state, probe_at=None)


def allowance(
    state: Recovery, now: float, rate: float, probe_timeout: float = PROBE_TIMEOUT
) -> tuple[Recovery, Allowance]:
    """What may be sent at `now` by a budget whose own rate is `rate` per second, and the state
    after it (the probe taken, or the ramp completed). A probe out for longer than
    `probe_timeout` (its sender died, say) is given up, and another may go."""
    if state.paused_until is None:
        return state, Allowance()
    if now < state.paused_until:
        return state, Allowance(wait=state.paused_until - now)
    if state.ramp_from is None:
        if state.probe_at is None or now - state.probe_at >= probe_timeout:
            return replace(state, probe_at=now), Allowance(probe=True)
        return state, Allowance(wait=PROBE_WAIT)
    ramp_rate = RAMP_START * 2.0 ** math.floor(now - state.ramp_from)
    if ramp_rate >= rate:
        return Recovery(), Allowance()  # back to the full budget; the 429s in a row are forgotten
    return state, Allowance(rate=ramp_rate, capacity=1.0)


def ramp_rate(state: Recovery, now: float) -> float | None:
    """Requests per second the ramp allows now (None when not ramping), for status and metrics."""
    if state.ramp_from is None or state.paused_until is None or now < state.paused_until:
        return None
    return RAMP_START * 2.0 ** math.floor(now - state.ramp_from)


def on_the_wall(state: Recovery, now: float, wall: float | None = None) -> Recovery:
    """`state`, kept on a clock whose time is `now` (a process's monotonic clock), moved to
    epoch seconds (`wall`, this host's time by default), to be written down for others."""
    offset = (time.time() if wall is None else wall) - now
    return Recovery(
        strikes=state.strikes,
        paused_until=None if state.paused_until is None else state.paused_until + offset,
        probe_at=None if state.probe_at is None else state.probe_at + offset,
        ramp_from=None if state.ramp_from is None else state.ramp_from + offset,
    )


@dataclass(frozen=True)
class Grant:
    """What the shared bucket gave: `granted` tokens (the one probe after a pause when `probe`),
    or how long until it could (`wait`), with the account's recovery as the database holds it
    (times in epoch seconds of the database server's clock, `now` among them)."""

    granted: int
    wait: float
    probe: bool
    recovery: Recovery
    now: float
