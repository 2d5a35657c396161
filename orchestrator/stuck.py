"""When is an order stuck, why, and what should the operator do about it.

An order is stuck when it made no progress for longer than its state's threshold, when it failed,
or when it has had an open intent (a VTEX call whose outcome is unknown) for too long. Thresholds
have defaults that fit VTEX's flow and can be tuned per state:

    ORCHESTRATOR_STUCK_AFTER="1h"                           every state
    ORCHESTRATOR_STUCK_AFTER="handling=4h,imported=30m"     some states, the rest keep their default

Each stuck order gets a reason in plain words and the command that usually fixes it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from orchestrator.durations import format_duration, parse_duration
from orchestrator.planner import REQUEST_GUARD, held_by_vtex
from orchestrator.rows import OrderRow
from states import State

# The one "outcome unknown for too long" threshold: ORCHESTRATOR_UNKNOWN_OUTCOME_AFTER's default.
UNKNOWN_OUTCOME_AFTER = timedelta(minutes=15)


def default_thresholds(grace_period: timedelta) -> dict[str, timedelta]:
    quick = timedelta(minutes=15)  # these steps take seconds when VTEX answers
    return {
        str(State.IMPORTED): quick,
        str(State.CREATED): quick,
        # VTEX holds the order for the grace period; only well past it is the wait suspicious.
        str(State.DISPATCH_AUTHORIZED): grace_period + max(quick, grace_period / 2),
        str(State.READY_FOR_HANDLING): quick,
        # Includes waiting for invoice data, which an ERP may legitimately take a while to send.
        str(State.HANDLING): timedelta(hours=1),
        # A seller may take a while to decide a cancellation request; a stuck one is a known issue.
        str(State.CANCELING): timedelta(hours=1),
    }


class StuckRulesError(ValueError):
    pass


@dataclass(frozen=True)
class StuckRules:
    thresholds: dict[str, timedelta]
    open_intent_after: timedelta = UNKNOWN_OUTCOME_AFTER
    overridden: dict[str, timedelta] = field(default_factory=dict)

    @classmethod
    def parse(
        cls, spec: str | None, grace_period: timedelta, open_intent_after: timedelta = UNKNOWN_OUTCOME_AFTER
    ) -> StuckRules:
        thresholds = default_thresholds(grace_period)
        overridden: dict[str, timedelta] = {}
        for raw in (spec or "").split(","):
            item = raw.strip()
            if not item:
                continue
            state, _, value = item.rpartition("=")
            try:
                duration = parse_duration(value)
            except ValueError as exc:
                raise StuckRulesError(f"ORCHESTRATOR_STUCK_AFTER: {exc}") from None
            targets = [state] if state else list(thresholds)
            for target in targets:
                if target not in thresholds:
                    raise StuckRulesError(
                        f"ORCHESTRATOR_STUCK_AFTER: {target!r} is not a state that can be stuck "
                        f"(one of {', '.join(thresholds)})"
                    )
                thresholds[target] = overridden[target] = duration
        return cls(thresholds, open_intent_after, overridden)


@dataclass(frozen=True)
class Diagnosis:
    reason: str
    suggestion: str


_DATA_CODES = ("FMT", "ORD", "CHK")


def diagnose(row: OrderRow, now: datetime, rules: StuckRules, grace_period: timedelta) -> Diagnosis:
    """A plain-words reason and the command that usually helps."""
    oid = row.order_id
    age = format_duration(now - row.state_changed_at)
    if row.state == State.FAILED:
        where = f"failed at {row.failed_from or 'an unknown step'}"
        error = row.last_error or "no error recorded"
        code = row.last_error_code or ""
        if code.startswith(_DATA_CODES):
            return Diagnosis(
                f"{where}: VTEX refused the order ({error})",
                f"fix the cause in VTEX (catalog, price, affiliate) then `orchestrator retry {oid}`, "
                f"or give up with `orchestrator cancel {oid}`",
            )
        if row.cancel_reason:
            return Diagnosis(
                f"{where}: VTEX refused to cancel it ({error})",
                f"`orchestrator retry {oid}` continues the order",
            )
        return Diagnosis(f"{where}: {error}", f"once the cause is gone: `orchestrator retry {oid}`")
    if row.needs_attention == REQUEST_GUARD:
        return Diagnosis(
            row.wait_reason or "stopped by the request guard",
            f"`orchestrator show {oid}` lists every request; it goes on by itself when the hour is over, "
            "and a loop that repeats it is a bug worth reporting",
        )
    if row.needs_attention:
        return Diagnosis(
            f"{row.needs_attention}: {row.last_error or row.wait_reason or 'see the history'}",
            f"`orchestrator track {oid} --tracking-number <number>` with a corrected number, or "
            f"`orchestrator retry {oid}` to send it again",
        )
    if row.intent and row.intent_at and now - row.intent_at > rules.open_intent_after:
        return Diagnosis(
            f"cannot tell whether {row.intent} took effect for {format_duration(now - row.intent_at)}: "
            f"{row.last_error or row.wait_reason or 'VTEX has not answered'}",
            "check that VTEX is reachable (`orchestrator check`); the daemon keeps asking VTEX and never "
            f"re-sends blindly; see `orchestrator show {oid} --vtex`",
        )
    if row.wait_reason and "account paused" in row.wait_reason:
        return Diagnosis(row.wait_reason, "fix VTEX_APP_KEY / VTEX_APP_TOKEN, then `orchestrator check`")
    if held_by_vtex(row) is not None:
        return Diagnosis(
            row.wait_reason or f"VTEX holds the order in {row.vtex_status}",
            f"`orchestrator show {oid} --vtex`; to give up on it: `orchestrator cancel {oid}`",
        )
    if row.state == State.CANCELING:
        return Diagnosis(
            row.wait_reason or f"canceling for {age}",
            f"the seller decides it in VTEX Admin (or VTEX support, if it is stuck); see "
            f"`orchestrator show {oid} --vtex`",
        )
    if row.state == State.DISPATCH_AUTHORIZED:
        seen = row.vtex_status or "nothing yet"
        ours = format_duration(grace_period)
        return Diagnosis(
            f"authorized {age} ago and VTEX reports {seen} (our grace period: {ours})",
            "make ORCHESTRATOR_GRACE_PERIOD match the account's cancellation grace period (VTEX Admin > "
            f"Orders > Settings); see `orchestrator show {oid} --vtex`",
        )
    if row.state == State.HANDLING and row.invoice is None:
        return Diagnosis(
            f"handling for {age}, waiting for invoice data",
            f"`orchestrator invoice {oid} --number <invoice number> --value {row.value}`",
        )
    if row.state == State.HANDLING and row.invoice_sent_at is not None:
        sent = format_duration(now - row.invoice_sent_at)
        seen = row.vtex_status or "no status"
        return Diagnosis(
            f"invoice {row.invoice_number} sent {sent} ago but VTEX still reports {seen}",
            f"`orchestrator show {oid} --vtex`: do the Output invoices add up to {row.value}?",
        )
    if row.last_error:
        return Diagnosis(
            f"no progress for {age}; retrying (attempt {row.attempts + 1}) after: {row.last_error}",
            f"`orchestrator show {oid}` for every attempt; it retries on its own",
        )
    return Diagnosis(row.wait_reason or f"no progress for {age}", f"`orchestrator show {oid}`")
