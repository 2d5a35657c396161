"""Validation of one import line, collecting every problem with the field it concerns.

The order body is checked against VTEX's placeFulfillmentOrderRequest schema (the fields and types
VTEX requires), and the invoice against the invoice notification schema plus what it takes for the
order to reach `invoiced`: an `Output` invoice for the full order value, and an invoice number of
letters and digits only (VTEX's known issues: `/`, `#` and spaces are accepted by the invoice call
but break the tracking update later and can keep the order from `invoiced`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any

Problems = list[tuple[str, str]]  # (field path, message)

AFFILIATE_ID = re.compile(r"[A-Za-z0-9]{3}")
SAFE_ID = re.compile(r"[A-Za-z0-9._~:@!$&'()*+,;=-]+")  # no spaces, '/', '?', '#', '%': it goes in URL paths
INVOICE_NUMBER = re.compile(r"[A-Za-z0-9]+")
SALES_CHANNEL = re.compile(r"[0-9A-Za-z_-]{1,20}")

# What the database columns hold, refused here with line and field rather than at write time.
MAX_MARKETPLACE_ORDER_ID = 100
MAX_INVOICE_NUMBER = 100
MAX_INT32 = 2**31 - 1  # quantities are int32 in VTEX's spec
MAX_MONEY = 2**53 - 1  # cents; the largest integer every JSON reader keeps exactly
MAX_TEXT = 10_000  # any one string in an order: names, addresses, URLs are far shorter


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _string(
    obj: Mapping[str, Any], key: str, path: str, problems: Problems, *, required: bool = True
) -> None:
    if key not in obj or obj[key] is None:
        if required:
            problems.append((f"{path}.{key}", "is required"))
        return
    if not isinstance(obj[key], str):
        problems.append((f"{path}.{key}", f"must be a string, got {type(obj[key]).__name__}"))


def _integer(
    obj: Mapping[str, Any],
    key: str,
    path: str,
    problems: Problems,
    *,
    required: bool = True,
    minimum: int | None = None,
    maximum: int = MAX_MONEY,
) -> None:
    if key not in obj or obj[key] is None:
        if required:
            problems.append((f"{path}.{key}", "is required"))
        return
    value = obj[key]
    if not _is_int(value):
        problems.append((f"{path}.{key}", f"must be an integer, got {type(value).__name__}"))
    elif minimum is not None and value < minimum:
        problems.append((f"{path}.{key}", f"must be at least {minimum}"))
    elif value > maximum:
        problems.append((f"{path}.{key}", f"must be at most {maximum}"))


def _object(
    obj: Mapping[str, Any], key: str, path: str, problems: Problems, *, required: bool = True
) -> Mapping[str, Any] | None:
    value = obj.get(key)
    if value is None:
        if required:
            problems.append((f"{path}.{key}", "is required"))
        return None
    if not isinstance(value, Mapping):
        problems.append((f"{path}.{key}", f"must be an object, got {type(value).__name__}"))
        return None
    return value


def validate_order(order: Mapping[str, Any], path: str = "order") -> Problems:
    problems: Problems = []
    _string(order, "marketplaceOrderId", path, problems)
    mkp_id = order.get("marketplaceOrderId")
    if isinstance(mkp_id, str) and not SAFE_ID.fullmatch(mkp_id):
        problems.append(
            (f"{path}.marketplaceOrderId", "must be non-empty and contain no spaces, '/', '?', '#' or '%'")
        )
    elif isinstance(mkp_id, str) and len(mkp_id) > MAX_MARKETPLACE_ORDER_ID:
        problems.append(
            (f"{path}.marketplaceOrderId", f"must be at most {MAX_MARKETPLACE_ORDER_ID} characters")
        )
    _string(order, "marketplaceServicesEndpoint", path, problems)
    _integer(order, "marketplacePaymentValue", path, problems, minimum=0)
    if order.get("marketplacePaymentValue") == 0:
        problems.append(
            (
                f"{path}.marketplacePaymentValue",
                "must be more than 0: VTEX refuses a payment value of 0 (FMT0042), and an order it "
                "cannot invoice never reaches invoiced",
            )
        )
    if "isCreatedAsync" in order and not isinstance(order["isCreatedAsync"], bool):
        problems.append((f"{path}.isCreatedAsync", "must be true or false"))

    items = order.get("items")
    if items is None:
        problems.append((f"{path}.items", "is required"))
    elif not isinstance(items, list) or not items:
        problems.append((f"{path}.items", "must be a non-empty array"))
    else:
        for i, item in enumerate(items):
            ipath = f"{path}.items[{i}]"
            if not isinstance(item, Mapping):
                problems.append((ipath, "must be an object"))
                continue
            _string(item, "id", ipath, problems)
            _integer(item, "quantity", ipath, problems, minimum=1, maximum=MAX_INT32)
            _string(item, "seller", ipath, problems)
            for key in ("price", "commission", "freightCommission", "unitMultiplier"):
                _integer(item, key, ipath, problems, required=False)

    client = _object(order, "clientProfileData", path, problems)
    if client is not None:
        for key in ("email", "firstName", "lastName", "documentType", "document"):
            _string(client, key, f"{path}.clientProfileData", problems)
        _string(client, "phone", f"{path}.clientProfileData", problems, required=False)

    shipping = _object(order, "shippingData", path, problems)
    if shipping is not None:
        spath = f"{path}.shippingData"
        address = _object(shipping, "address", spath, problems, required=False)
        if address is not None:
            for key in (
                "addressType",
                "receiverName",
                "postalCode",
                "city",
                "state",
                "country",
                "street",
                "number",
            ):
                _string(address, key, f"{spath}.address", problems)
        logistics = shipping.get("logisticsInfo")
        if logistics is not None and not isinstance(logistics, list):
            problems.append((f"{spath}.logisticsInfo", "must be an array"))
        elif logistics:
            for i, info in enumerate(logistics):
                lpath = f"{spath}.logisticsInfo[{i}]"
                if not isinstance(info, Mapping):
                    problems.append((lpath, "must be an object"))
                    continue
                _integer(info, "itemIndex", lpath, problems, minimum=0)
                _string(info, "selectedSla", lpath, problems)
                _integer(info, "price", lpath, problems, minimum=0)
    if (
        "paymentData" in order
        and order["paymentData"] is not None
        and not isinstance(order["paymentData"], Mapping)
    ):
        problems.append(
            (f"{path}.paymentData", "must be null (the marketplace already took the payment) or an object")
        )
    return problems


def invoice_cents(value: Any) -> int | None:
    """Cents from an integer or a string of ASCII digits ("²" passes `isdigit` but is no amount)."""
    if _is_int(value):
        return int(value)
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 16:
        return int(value)
    return None


def validate_invoice(invoice: Mapping[str, Any], order_value: int | None, path: str = "invoice") -> Problems:
    problems: Problems = []
    if invoice.get("type") != "Output":
        problems.append((f"{path}.type", 'must be "Output" (the sale invoice; Input invoices are returns)'))
    _string(invoice, "issuanceDate", path, problems)
    issued = invoice.get("issuanceDate")
    if isinstance(issued, str):
        try:
            datetime.fromisoformat(issued.replace("Z", "+00:00"))
        except ValueError:
            problems.append(
                (f"{path}.issuanceDate", "must be an ISO 8601 date and time, e.g. 2024-01-31T18:25:43-05:00")
            )
    number = invoice.get("invoiceNumber")
    if number is None:
        problems.append((f"{path}.invoiceNumber", "is required"))
    elif isinstance(number, str) and len(number) > MAX_INVOICE_NUMBER:
        problems.append((f"{path}.invoiceNumber", f"must be at most {MAX_INVOICE_NUMBER} characters"))
    elif not isinstance(number, str) or not INVOICE_NUMBER.fullmatch(number):
        problems.append(
            (
                f"{path}.invoiceNumber",
                f"{number!r} must contain only letters and digits: VTEX accepts '/', '#' and spaces in the "
                "invoice but then fails the tracking update and may never mark the order invoiced",
            )
        )
    cents = invoice_cents(invoice.get("invoiceValue"))
    if invoice.get("invoiceValue") is None:
        problems.append((f"{path}.invoiceValue", "is required"))
    elif cents is None or cents <= 0 or cents > MAX_MONEY:
        problems.append(
            (f"{path}.invoiceValue", "must be a positive amount in cents (an integer or a string of digits)")
        )
    elif order_value is not None and cents != order_value:
        problems.append(
            (
                f"{path}.invoiceValue",
                f"is {cents} but the order's marketplacePaymentValue is {order_value}: VTEX marks the order "
                "invoiced only when its Output invoices add up to the order value",
            )
        )
    items = invoice.get("items")
    if not isinstance(items, list):
        problems.append((f"{path}.items", "is required and must be an array"))
    else:
        for i, item in enumerate(items):
            ipath = f"{path}.items[{i}]"
            if not isinstance(item, Mapping):
                problems.append((ipath, "must be an object"))
                continue
            _string(item, "id", ipath, problems)
            _integer(item, "price", ipath, problems, minimum=0)
            _integer(item, "quantity", ipath, problems, minimum=1, maximum=MAX_INT32)
    for key in (
        "invoiceKey",
        "invoiceUrl",
        "embeddedInvoice",
        "courier",
        "trackingNumber",
        "trackingUrl",
        "dispatchedDate",
    ):
        _string(invoice, key, path, problems, required=False)
    return problems


def text_problems(value: Any, path: str = "") -> Problems:
    """Strings no database or VTEX takes: lone surrogates (valid JSON escapes, invalid text), NUL
    characters, and texts longer than any real field. Walked without recursion, so that depth
    costs no stack."""
    problems: Problems = []
    stack: list[tuple[str, Any]] = [(path, value)]
    while stack:
        where, node = stack.pop()
        if isinstance(node, str):
            if "\x00" in node:
                problems.append((where or "(line)", "contains a NUL character"))
            elif len(node) > MAX_TEXT:
                problems.append((where or "(line)", f"is longer than {MAX_TEXT} characters"))
            else:
                try:
                    node.encode("utf-8")
                except UnicodeEncodeError:
                    problems.append(
                        (where or "(line)", "contains an unpaired surrogate (\\ud800-\\udfff): not text")
                    )
        elif isinstance(node, Mapping):
            for key, item in node.items():
                if isinstance(key, str):
                    stack.append((f"{where}.{key}" if where else key, item))
        elif isinstance(node, list):
            stack.extend((f"{where}[{i}]", item) for i, item in enumerate(node))
    return sorted(problems)


def derive_order_id(affiliate_id: str, marketplace_order_id: str) -> str:
    """VTEX's fulfillment order id is known before Place: `{affiliateId}-{marketplaceOrderId}`."""
    return f"{affiliate_id}-{marketplace_order_id}"
