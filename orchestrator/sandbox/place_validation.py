"""Checks the sandbox applies to a Place fulfillment order body before creating anything.

Where VTEX documents a code for a refusal (FMT0031, FMT0070, FMT0026, FMT0057, FMT0089, FMT005,
FMT007) the sandbox answers with it; a body that does not match VTEX's schema at all gets a 400
naming the first offending field.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from orchestrator.sandbox.catalog import Catalog


@dataclass(frozen=True)
class Refusal:
    status: int
    code: str
    message: str


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


_REQUIRED_TOP = (
    "marketplaceOrderId",
    "marketplacePaymentValue",
    "items",
    "clientProfileData",
    "shippingData",
)
_REQUIRED_CLIENT = ("email", "firstName", "lastName", "documentType", "document")
_REQUIRED_ADDRESS = (
    "addressType",
    "receiverName",
    "postalCode",
    "city",
    "state",
    "country",
    "street",
    "number",
)


def schema_refusal(body: Mapping[str, Any]) -> Refusal | None:
    """The first way `body` departs from VTEX's placeFulfillmentOrderRequest schema, if any."""

    def bad(field: str, what: str) -> Refusal:
        return Refusal(400, "SBX-INVALID-BODY", f"Invalid request body: '{field}' {what}")

    if not body.get("marketplaceServicesEndpoint"):
        return Refusal(400, "FMT0070", "The endpoint to marketplace's service has not been provided")
    for name in _REQUIRED_TOP:
        if name not in body or body[name] is None:
            return bad(name, "is required")
    if not isinstance(body["marketplaceOrderId"], str) or not body["marketplaceOrderId"]:
        return bad("marketplaceOrderId", "must be a non-empty string")
    if not _is_int(body["marketplacePaymentValue"]) or body["marketplacePaymentValue"] <= 0:
        return Refusal(400, "FMT0042", "Invalid marketplace payment value")
    items = body["items"]
    if not isinstance(items, list):
        return bad("items", "must be an array")
    if not items:
        return Refusal(400, "FMT0026", "The order is empty")
    for i, item in enumerate(items):
        if not isinstance(item, Mapping):
            return bad(f"items[{i}]", "must be an object")
        if not isinstance(item.get("id"), str):
            return bad(f"items[{i}].id", "is required and must be a string")
        if not _is_int(item.get("quantity")) or item["quantity"] <= 0:
            return bad(f"items[{i}].quantity", "is required and must be a positive integer")
        if not isinstance(item.get("seller"), str):
            return bad(f"items[{i}].seller", "is required and must be a string")
        if "price" in item and not _is_int(item["price"]):
            return bad(f"items[{i}].price", "must be an integer (cents)")
    client = body["clientProfileData"]
    if not isinstance(client, Mapping):
        return bad("clientProfileData", "must be an object")
    for name in _REQUIRED_CLIENT:
        if not isinstance(client.get(name), str):
            return bad(f"clientProfileData.{name}", "is required and must be a string")
    shipping = body["shippingData"]
    if not isinstance(shipping, Mapping):
        return bad("shippingData", "must be an object")
    address = shipping.get("address")
    if address is not None:
        if not isinstance(address, Mapping):
            return bad("shippingData.address", "must be an object")
        for name in _REQUIRED_ADDRESS:
            if not isinstance(address.get(name), str):
                return bad(f"shippingData.address.{name}", "is required and must be a string")
    logistics = shipping.get("logisticsInfo") or []
    if not isinstance(logistics, list):
        return bad("shippingData.logisticsInfo", "must be an array")
    seen: set[int] = set()
    for i, info in enumerate(logistics):
        if not isinstance(info, Mapping):
            return bad(f"shippingData.logisticsInfo[{i}]", "must be an object")
        index = info.get("itemIndex")
        if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < len(items):
            return Refusal(400, "FMT0057", f"Invalid item index {index!r}")
        if index in seen:
            return Refusal(400, "FMT0089", f"Duplicated item index {index}")
        seen.add(index)
        if not isinstance(info.get("selectedSla"), str):
            return bad(f"shippingData.logisticsInfo[{i}].selectedSla", "is required and must be a string")
        if not _is_int(info.get("price")):
            return bad(f"shippingData.logisticsInfo[{i}].price", "is required and must be an integer (cents)")
    return None


def catalog_refusal(body: Mapping[str, Any], catalog: Catalog) -> Refusal | None:
    for item in body["items"]:
        if not catalog.available(item["id"], item["quantity"]):
            return Refusal(400, "FMT005", f"Item {item['id']} is not available")
    return None


def expected_value(body: Mapping[str, Any], catalog: Catalog) -> tuple[int, int]:
    """(items total, shipping total): what the store wants paid for this body."""
    items_total = 0
    for item in body["items"]:
        price = item.get("price")
        if price is None:
            sku = catalog.get(item["id"])
            price = sku.price if sku and sku.price is not None else 0
        items_total += price * item["quantity"]
    shipping_total = sum(info["price"] for info in body["shippingData"].get("logisticsInfo") or [])
    return items_total, shipping_total


def payment_refusal(body: Mapping[str, Any], catalog: Catalog) -> Refusal | None:
    items_total, shipping_total = expected_value(body, catalog)
    desired = items_total + shipping_total
    paid = body["marketplacePaymentValue"]
    if paid != desired:
        return Refusal(400, "FMT007", f"Payment total ({paid}) differs from store desired value ({desired})")
    return None
