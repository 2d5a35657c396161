"""Timing policies as values: how long to wait before retrying a failed call, and how often to look
at VTEX while waiting for it (the grace period, the invoice being verified).

Kept apart from the engine so they can be tuned per kind of step and tested on their own.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from orchestrator.config.account_tables import AccountSettings
from orchestrator.config.settings import Settings
from states import InvoiceTiming


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with jitter, and a bound on attempts after which the order fails."""

    base: float = 1.0
    factor: float = 2.0
    cap: float = 300.0
    jitter: float = 0.25  # +/- this fraction, so retries of many orders do not arrive together
    max_attempts: int = 8

    def delay(self, attempt: int, rng: random.Random | None = None) -> timedelta:
        raw = min(self.cap, self.base * self.factor ** max(0, attempt - 1))
        spread = raw * self.jitter
        return timedelta(seconds=max(0.0, raw + (rng or random).uniform(-spread, spread)))

    def exhausted(self, attempts: int) -> bool:
        return attempts >= self.max_attempts


@dataclass(frozen=True)
class PollPolicy:
    """Looking at VTEX while waiting for a status that VTEX reaches on its own.

    The first look is at `start + first`; afterwards the wait grows with the time already spent
    waiting (`growth` of it), between `minimum` and `cap`. The delay is derived from timestamps in
    the row, so a restarted daemon continues the same schedule.
    """

    first: timedelta = timedelta(seconds=1)
    growth: float = 0.5
    minimum: timedelta = timedelta(seconds=2)
    cap: timedelta = timedelta(minutes=5)

    def next_look(self, start: datetime, now: datetime) -> datetime:
        first = start + self.first
        if now < first:
            return first
        waited = now - start
        delay = min(self.cap, max(self.minimum, waited * self.growth))
        return now + delay


@dataclass(frozen=True)
class Policies:
    """Every timing rule the engine uses, in one value."""

    write: RetryPolicy = RetryPolicy()
    per_action: Mapping[str, RetryPolicy] = field(default_factory=dict)  # overrides of `write`, by write
    read: RetryPolicy = RetryPolicy(base=2.0, cap=300.0, max_attempts=1_000_000)  # reads never fail an order
    refused_by_server: RetryPolicy = RetryPolicy(base=2.0, cap=60.0, max_attempts=3)
    await_ready: PollPolicy = PollPolicy(first=timedelta(0))
    await_invoiced: PollPolicy = PollPolicy(first=timedelta(seconds=1))
    # VTEX holds the order in a status we do not drive (a manual authorization, a payment): look
    # again after 10 s, then less and less often (half the time waited), at most every 15 minutes:
    # a dozen looks in the first hours, then four an hour.
    await_held: PollPolicy = PollPolicy(
        first=timedelta(0), minimum=timedelta(seconds=10), cap=timedelta(minutes=15)
    )
    # Our invoices do not reach VTEX's value of the order and none waits to go: VTEX will not mark
    # it invoiced until more come (attaching one makes the order due at once), so the looks are
    # only for a value changed in VTEX or an invoice sent from elsewhere: at most hourly.
    await_more_invoices: PollPolicy = PollPolicy(
        first=timedelta(0), minimum=timedelta(minutes=1), cap=timedelta(hours=1)
    )
    # VTEX refused a call "not yet" (ORD039, its index behind our Place): the call goes again
    # soon, then less and less often, by the time since the order's state (or VTEX status) began.
    await_not_yet: PollPolicy = PollPolicy(
        first=timedelta(seconds=1), minimum=timedelta(seconds=2), cap=timedelta(minutes=5)
    )
    # VTEX cancels asynchronously: a first look soon, then less often (a seller may take hours).
    await_canceled: PollPolicy = PollPolicy(
        first=timedelta(seconds=1), minimum=timedelta(seconds=2), cap=timedelta(minutes=15)
    )
    # The last line of defence against any loop: no order makes more VTEX requests in an hour.
    max_requests_per_hour: int = 60
    # VTEX starts its grace period when it has processed the authorization, a little after our call
    # returned; looking exactly at our own end of it would mostly meet a 409.
    grace_margin: timedelta = timedelta(seconds=1)
    rate_limited: timedelta = timedelta(seconds=60)  # VTEX's advice when a 429 has no Retry-After
    endpoint_pause: timedelta = timedelta(seconds=30)  # an answer that is not VTEX's, without a guard
    invoice_timing: InvoiceTiming = InvoiceTiming.AFTER_GRACE  # when the invoice may go out
    bad_credentials: timedelta = timedelta(minutes=5)

    def retry_for(self, action: str) -> RetryPolicy:
        return self.per_action.get(action, self.write)

    @classmethod
    def for_grace(
        cls,
        grace: timedelta,
        max_attempts: int,
        invoice_timing: InvoiceTiming | str = InvoiceTiming.AFTER_GRACE,
        max_requests_per_hour: int = 60,
    ) -> Policies:
        """Scale the readiness polling to the grace period: minutes for VTEX's 30, seconds for a demo."""
        minimum = max(timedelta(seconds=1), min(timedelta(minutes=1), grace / 10))
        margin = max(timedelta(seconds=1), min(timedelta(minutes=1), grace * 0.02))
        return cls(
            write=RetryPolicy(max_attempts=max_attempts),
            grace_margin=margin,
            invoice_timing=InvoiceTiming(invoice_timing),
            await_ready=PollPolicy(first=timedelta(0), minimum=minimum, cap=timedelta(minutes=5)),
            max_requests_per_hour=max_requests_per_hour,
        )

    def listening(self) -> Policies:
        """The looks of an account whose status comes from VTEX's Orders Feed: each status the
        engine waits for arrives as an event that makes the order due at once, so Get order is
        only the safety net for an event that never comes: a first look after some minutes, then
        rarely (at most every 3 hours), instead of every few minutes."""
        net = PollPolicy(first=timedelta(minutes=5), minimum=timedelta(minutes=5), cap=timedelta(hours=3))
        # A hold ends in a status the feed may not carry (an approval: waiting-ffmt-authorization),
        # and so does a cancellation the seller denies (the order goes back to where it was): these
        # look as a polling account's do at first, then at most hourly.
        held = PollPolicy(first=timedelta(0), minimum=timedelta(seconds=10), cap=timedelta(hours=1))
        canceled = replace(self.await_canceled, cap=timedelta(hours=1))
        return replace(self, await_invoiced=net, await_held=held, await_canceled=canceled)

    @classmethod
    def for_account(cls, settings: Settings, account: AccountSettings) -> Policies:
        """An account's policies: its grace period and invoice timing, the deployment's attempts
        and request guard, and fewer looks when its status comes from the Orders Feed."""
        policies = cls.for_grace(
            account.grace_period,
            settings.max_attempts,
            invoice_timing=account.invoice_timing,
            max_requests_per_hour=settings.max_requests_per_order_hour,
        )
        return policies if account.status_source == "poll" else policies.listening()
