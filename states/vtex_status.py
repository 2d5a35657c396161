"""VTEX OMS status strings: what each proves about our progress, and what it means while an order
sits in each of our states.

VTEX's docs disagree on some names (the waiting-for-authorization status is documented both as
`waiting-ffmt-authorization` and `waiting-for-manual-authorization`), so every rule here asks
"has the order got *past* a point" using the set of statuses that can only be reached after it.
That keeps the rules correct whichever spelling a real account reports, and tolerant of VTEX's
transient statuses (`authorize-fulfillment`, `start-handling`, `invoice`).

The table of states (`states.machine.PHASES`) says which statuses are VTEX moving normally while
an order is in each of our states. A status past them lets the engine catch up (the rules); any
other status is VTEX holding the order somewhere this tool does not drive (a manual authorization,
a payment, a cancellation request): the engine then only looks again, less and less often, and
says why in plain words (`advice`), instead of sending a call VTEX will refuse.
"""

from __future__ import annotations

# Reached only after Authorize dispatch took effect.
AFTER_AUTHORIZE: frozenset[str] = frozenset(
    {
        "authorize-fulfillment",
        "window-to-cancel",
        "ready-for-handling",
        "start-handling",
        "handling",
        "invoice",
        "invoiced",
    }
)

# Reached only once VTEX's cancellation grace period is over.
READY_OR_LATER: frozenset[str] = frozenset(
    {"ready-for-handling", "start-handling", "handling", "invoice", "invoiced"}
)

# Reached only after Start handling took effect.
HANDLING_OR_LATER: frozenset[str] = frozenset({"start-handling", "handling", "invoice", "invoiced"})

# VTEX is canceling the order, or was asked to and has not decided (`cancellation-requested`
# waits for the seller; `cancel` is the short-lived "Canceling" inside the grace period).
CANCELING: frozenset[str] = frozenset({"cancel", "cancellation-requested", "request-cancel"})
CANCELED_STATUS = "canceled"
CANCELING_OR_CANCELED: frozenset[str] = CANCELING | {CANCELED_STATUS}

# VTEX's API status of an incomplete order is JSON `null` ("the system can still launch the
# flow", Help Center, order flow and status): an order in progress, never a sign that the URL is
# not VTEX's. Rules and reports carry it as this string.
INCOMPLETE = "null"

INVOICED = "invoiced"
# Statuses VTEX never leaves (an invoiced order cannot change; a canceled one stays canceled,
# whatever a late `cancel` event says).
FINAL: frozenset[str] = frozenset({INVOICED, CANCELED_STATUS})
READY_FOR_HANDLING = "ready-for-handling"
WINDOW_TO_CANCEL = "window-to-cancel"
STILL_IN_GRACE: frozenset[str] = frozenset({WINDOW_TO_CANCEL, "authorize-fulfillment"})

# Statuses VTEX shows while moving an order along normally, before our Authorize dispatch and
# after our Start handling (the table of states in `states.machine` uses these).
BEFORE_AUTHORIZE: frozenset[str] = frozenset(
    {
        "order-created",
        "order-accepted",
        "on-order-completed",
        "on-order-completed-ffm",
        "waiting-for-authorization",
        "waiting-for-fulfillment",
        "waiting-ffmt-authorization",
        "waiting-for-manual-authorization",
        "release-to-fulfillment",
    }
)
# Statuses in which VTEX waits for someone other than us: the seller's approval of a price
# divergence, VTEX itself completing an incomplete order. A call VTEX refused while showing one
# of them is not sent again until the status changes; the order only looks.
WAITS_FOR_OTHERS: frozenset[str] = frozenset({"waiting-for-manual-authorization", INCOMPLETE})

# What an account's Orders Feed is configured to carry (`FromWorkflow`): the statuses the engine
# acts on (ready-for-handling: Start handling; invoiced: done) and those in which VTEX holds or
# cancels an order. Every event costs a share of a feed read and commit, so the statuses our own
# calls bring about (handling, the waits before our authorization) are left out.
FEED_STATUSES: tuple[str, ...] = (
    "ready-for-handling",
    "invoiced",
    "waiting-for-manual-authorization",
    "cancellation-requested",
    "cancel",
    "canceled",
)

HANDLING_ON_ITS_WAY: frozenset[str] = frozenset(
    {"start-handling", "handling", "invoice", "ready-for-invoicing"}
)

_ADVICE: dict[str, str] = {
    "waiting-for-manual-authorization": (
        "VTEX waits for the seller's approval (a price divergence, say): approve it in VTEX Admin "
        "(Orders), or cancel it; VTEX cancels it by itself after 30 days"
    ),
    INCOMPLETE: (
        "VTEX reports the order incomplete (status null) and can still launch its flow; if it "
        "stays, look at the order in VTEX Admin"
    ),
    "waiting-ffmt-authorization": (
        "VTEX still waits for the dispatch authorization (its order index may lag just after "
        "Place); if it stays, look at the order in VTEX Admin"
    ),
    "payment-pending": (
        "VTEX waits for a payment it will not see for this order: check the affiliate's payment "
        "settings in VTEX Admin, or cancel it"
    ),
    "cancellation-requested": "a cancellation was requested in VTEX; the seller accepts or denies it there",
    "request-cancel": "a cancellation was requested in VTEX; the seller accepts or denies it there",
    "cancel": "VTEX is canceling the order",
    "on-order-completed-ffm": (
        "VTEX has not finished creating the order (a known VTEX issue); if it stays, VTEX support "
        "must repair it"
    ),
    "on-order-completed": (
        "VTEX has not finished creating the order (a known VTEX issue); if it stays, VTEX support "
        "must repair it"
    ),
    "payment-approved": (
        "VTEX went back to payment-approved (a partial invoice?): the Output invoices must add up to "
        "the order value"
    ),
}


def has_advice(status: str) -> bool:
    return status in _ADVICE


def advice(status: str) -> str:
    """What to do about an order VTEX holds in `status`, in plain words."""
    return _ADVICE.get(status, "this tool does not drive that status; look at the order in VTEX Admin")
