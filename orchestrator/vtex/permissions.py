"""Which License Manager resource each VTEX call needs, as VTEX's API reference names them.

VTEX answers 403 when the app key's roles lack the one resource a call needs, and the resource
differs per call (Orders API, each endpoint's "Permissions"). So a 403 is about one kind of call,
never about the whole account: a key without *Notify invoice* still places, authorizes and starts
handling. The Marketplace Protocol's fulfillment calls (Place, Authorize dispatch) name no
resource ("check with your service provider"); they share one entry that says so.
"""

from __future__ import annotations

FULFILLMENT = "fulfillment orders (VTEX names no resource for them: ask VTEX support)"

RESOURCE_OF: dict[str, str] = {
    "place-order": FULFILLMENT,
    "authorize-dispatch": FULFILLMENT,
    "get-order": "View order",
    "start-handling": "Change order workflow status",
    "send-invoice": "Notify invoice",
    "send-tracking": "Notify invoice",
    "cancel-order": "Cancel order",
}

# Every resource the flow needs, in the order `check` lists them, with the calls that need it.
RESOURCES: tuple[str, ...] = tuple(dict.fromkeys(RESOURCE_OF.values()))

# The Orders Feed's calls need their own resource; only an account reading the feed needs it.
FEED = "Feed v3 and Hook Admin"
RESOURCE_OF.update(
    dict.fromkeys(
        ("feed-config", "feed-config-set", "feed-read", "feed-commit", "hook-config", "hook-config-set"), FEED
    )
)


def resource_of(operation: str) -> str:
    """The License Manager resource `operation` needs (the operation itself when unknown)."""
    return RESOURCE_OF.get(operation, operation)


def operations_needing(resource: str) -> list[str]:
    return [operation for operation, needed in RESOURCE_OF.items() if needed == resource]
