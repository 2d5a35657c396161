"""Checks on an invoice notification body, and the package VTEX stores from it.

`invoiceValue` is a string of cents in VTEX's spec while VTEX's guides send an integer: both are
accepted. `type` must be exactly `Output` or `Input`.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

_REQUIRED = ("type", "issuanceDate", "invoiceNumber", "invoiceValue", "items")


def invoice_value_cents(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isascii() and value.isdigit():
        return int(value)
    return None


def invoice_refusal(payload: Any) -> str | None:
    """Why VTEX would refuse this body, or None."""
    if not isinstance(payload, Mapping):
        return "Invalid request body: expected an object"
    for name in _REQUIRED:
        if payload.get(name) is None:
            return f"Invalid request body: '{name}' is required"
    if payload["type"] not in ("Output", "Input"):
        return "Invalid request body: 'type' must be Output or Input"
    cents = invoice_value_cents(payload["invoiceValue"])
    if cents is None or cents <= 0:
        return "Invalid request body: 'invoiceValue' must be a positive amount in cents, without separators"
    if not isinstance(payload["invoiceNumber"], str) or not payload["invoiceNumber"]:
        return "Invalid request body: 'invoiceNumber' must be a non-empty string"
    if not isinstance(payload["issuanceDate"], str):
        return "Invalid request body: 'issuanceDate' must be a string"
    items = payload["items"]
    if not isinstance(items, list):
        return "Invalid request body: 'items' must be an array"
    for i, item in enumerate(items):
        if not isinstance(item, Mapping):
            return f"Invalid request body: 'items[{i}]' must be an object"
        if not isinstance(item.get("id"), str):
            return f"Invalid request body: 'items[{i}].id' is required"
        for name in ("price", "quantity"):
            if not isinstance(item.get(name), int) or isinstance(item.get(name), bool):
                return f"Invalid request body: 'items[{i}].{name}' is required and must be an integer"
    return None


def package_from(payload: Mapping[str, Any], now: float) -> dict[str, Any]:
    """The `packageAttachment.packages[]` entry Get order shows for this invoice."""
    cents = invoice_value_cents(payload["invoiceValue"]) or 0
    return {
        "type": payload["type"],
        "invoiceNumber": payload["invoiceNumber"],
        "invoiceValue": cents,
        "invoiceUrl": payload.get("invoiceUrl"),
        "invoiceKey": payload.get("invoiceKey"),
        "issuanceDate": payload["issuanceDate"],
        "courier": payload.get("courier") or "",
        "trackingNumber": payload.get("trackingNumber") or "",
        "trackingUrl": payload.get("trackingUrl") or "",
        "embeddedInvoice": payload.get("embeddedInvoice") or "",
        "dispatchedDate": payload.get("dispatchedDate"),
        "items": [
            {
                "itemIndex": index,
                "id": item["id"],
                "quantity": item["quantity"],
                "price": item["price"],
                "description": item.get("description"),
                "unitMultiplier": 1.0,
            }
            for index, item in enumerate(payload["items"])
        ],
        "courierStatus": None,
        "cfop": None,
        "lastChange": datetime.fromtimestamp(now, UTC).isoformat(),
        "restitutions": None,
        "volumes": None,
    }
