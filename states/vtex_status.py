"""VTEX OMS status strings, grouped by what they prove about our own progress.

VTEX's docs disagree on some names (the waiting-for-authorization status is documented both as
`waiting-ffmt-authorization` and `waiting-for-manual-authorization`), so every rule here asks
"has the order got *past* a point" using the set of statuses that can only be reached after it.
That keeps the rules correct whichever spelling a real account reports, and tolerant of VTEX's
transient statuses (`authorize-fulfillment`, `start-handling`, `invoice`).
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

# VTEX is cancelling or has cancelled the order; `cancel` is the short-lived "Canceling" status.
CANCELED: frozenset[str] = frozenset({"cancel", "canceled"})

INVOICED = "invoiced"
READY_FOR_HANDLING = "ready-for-handling"
WINDOW_TO_CANCEL = "window-to-cancel"
