"""VTEX's order id rule, in one place.

A fulfillment order's id is `{affiliateId}-{marketplaceOrderId}`, known before Place is sent: that is
what lets the engine look an order up after any crash or lost answer, before anything is re-sent.
"""

from __future__ import annotations


def derive_order_id(affiliate_id: str, marketplace_order_id: str) -> str:
    return f"{affiliate_id}-{marketplace_order_id}"
