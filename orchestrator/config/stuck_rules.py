"""When an order is stuck: thresholds per state, tunable, and the one unknown-outcome limit.

An order is stuck when it made no progress for longer than its state's threshold, when it failed,
when it stopped for a person, or when it has had an open intent (a VTEX call whose outcome is
unknown) for too long. Thresholds have defaults that fit VTEX's flow and can be tuned per state:

    ORCHESTRATOR_STUCK_AFTER="1h"                           every state
    ORCHESTRATOR_STUCK_AFTER="handling=4h,imported=30m"     some states, the rest keep their default

Kept apart from the diagnosis (`orchestrator.ops.stuck`) so that settings can check them cheaply.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from orchestrator.durations import parse_duration
from orchestrator.errors import UsageError
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


class StuckRulesError(UsageError, ValueError):
    """ORCHESTRATOR_STUCK_AFTER cannot be read; the message says which part."""


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
