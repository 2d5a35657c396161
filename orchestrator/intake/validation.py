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
# VTEX's own example is DFG-v7731485plzv-01; '/', '#' and spaces break the tracking update (KIs 9-12).
INVOICE_NUMBER = re.compile(r"[A-Za-z0-9_-]+")
SALES_CHANNEL = re.compile(r"[0-9A-Za-z_-]{1,20}")
EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
COUNTRY = re.compile(r"[A-Z]{3}")
LOCK_TTL = re.compile(r"[1-9][0-9]{0,3}(d|bd)")  # days or business days, as VTEX documents it
# A date and a time (with or without seconds, fraction and offset), as VTEX's examples show.
DATE_TIME = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?")

# What the database columns hold, refused here with line and field rather than at write time.
MAX_MARKETPLACE_ORDER_ID = 100
MAX_INVOICE_NUMBER = 100
MAX_INT32 = 2**31 - 1  # quantities are int32 in VTEX's spec
MAX_MONEY = 2**53 - 1  # cents; the largest integer every JSON reader keeps exactly
MAX_TEXT = 10_000  # any one string in an order: names, addresses, URLs are far shorter


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _string(
    obj: Mapping[str, Any],
    key: str,
    path: str,
    problems: Problems,
    *,
    required: bool = True,
    nonempty: str | None = None,
) -> None:
    """A string at `key`; with `nonempty` (a note, maybe empty) a blank one is refused too."""
    if key not in obj or obj[key] is None:
        if required:
            problems.append((f"{path}.{key}", "is required"))
        return
    if not isinstance(obj[key], str):
        problems.append((f"{path}.{key}", f"must be a string, got {type(obj[key]).__name__}"))
    elif nonempty is not None and not obj[key].strip():
        problems.append((f"{path}.{key}", "must not be empty" + (f" ({nonempty})" if nonempty else "")))


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
    """Every way `order` departs from what VTEX's Place accepts, as far as it can be told without
    VTEX (the catalog, the store's prices and stock need VTEX)."""
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
    _string(order, "marketplaceServicesEndpoint", path, problems, nonempty="VTEX: FMT0070")
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
    items = _items(order, path, problems)
    client = _object(order, "clientProfileData", path, problems)
    if client is not None:
        cpath = f"{path}.clientProfileData"
        for key in ("email", "firstName", "lastName", "documentType", "document"):
            _string(client, key, cpath, problems, nonempty="")
        _string(client, "phone", cpath, problems, required=False)
        email = client.get("email")
        if isinstance(email, str) and email and not EMAIL.fullmatch(email):
            problems.append((f"{cpath}.email", "is not an e-mail address (VTEX: FMT0032)"))
    shipping = _object(order, "shippingData", path, problems)
    if shipping is not None:
        _shipping(shipping, f"{path}.shippingData", len(items) if items is not None else None, problems)
    if (
        "paymentData" in order
        and order["paymentData"] is not None
        and not isinstance(order["paymentData"], Mapping)
    ):
        problems.append(
            (f"{path}.paymentData", "must be null (the marketplace already took the payment) or an object")
        )
    return problems


def _items(order: Mapping[str, Any], path: str, problems: Problems) -> list[Any] | None:
    items = order.get("items")
    if items is None:
        problems.append((f"{path}.items", "is required"))
        return None
    if not isinstance(items, list) or not items:
        problems.append((f"{path}.items", "must be a non-empty array (VTEX: FMT0026)"))
        return None
    for i, item in enumerate(items):
        ipath = f"{path}.items[{i}]"
        if not isinstance(item, Mapping):
            problems.append((ipath, "must be an object"))
            continue
        _string(item, "id", ipath, problems, nonempty="VTEX: FMT0039")
        _integer(item, "quantity", ipath, problems, minimum=1, maximum=MAX_INT32)
        _string(item, "seller", ipath, problems, nonempty="VTEX: FMT0040")
        for key in ("price", "commission", "freightCommission", "unitMultiplier"):
            _integer(item, key, ipath, problems, required=False)
    return items


def _shipping(shipping: Mapping[str, Any], spath: str, item_count: int | None, problems: Problems) -> None:
    address = _object(shipping, "address", spath, problems, required=False)
    if address is not None:
        apath = f"{spath}.address"
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
            _string(address, key, apath, problems, nonempty="")
        country = address.get("country")
        if isinstance(country, str) and country and not COUNTRY.fullmatch(country):
            problems.append(
                (f"{apath}.country", f"{country!r} must be a 3-letter ISO country code, e.g. BRA")
            )
    if shipping.get("updateStatus") == "outdated":
        problems.append(
            (f"{spath}.updateStatus", 'VTEX does not place an order whose shipping data is "outdated"')
        )
    logistics = shipping.get("logisticsInfo")
    if logistics is not None and not isinstance(logistics, list):
        problems.append((f"{spath}.logisticsInfo", "must be an array"))
        return
    seen: dict[int, int] = {}
    for i, info in enumerate(logistics or []):
        lpath = f"{spath}.logisticsInfo[{i}]"
        if not isinstance(info, Mapping):
            problems.append((lpath, "must be an object"))
            continue
        _integer(info, "itemIndex", lpath, problems, minimum=0, maximum=MAX_INT32)
        _string(info, "selectedSla", lpath, problems, nonempty="VTEX: FMT004")
        _integer(info, "price", lpath, problems, minimum=0)
        ttl = info.get("lockTTL")
        if ttl is not None and (not isinstance(ttl, str) or not LOCK_TTL.fullmatch(ttl)):
            problems.append(
                (f"{lpath}.lockTTL", f"{ttl!r} is not a reservation period such as 8d or 5bd (VTEX: FMT0077)")
            )
        index = info.get("itemIndex")
        if not isinstance(index, int) or isinstance(index, bool) or index < 0:
            continue
        if item_count is not None and index >= item_count:
            problems.append(
                (f"{lpath}.itemIndex", f"{index} points past the {item_count} item(s) (VTEX: FMT0057)")
            )
        elif index in seen:
            problems.append(
                (
                    f"{lpath}.itemIndex",
                    f"{index} is already used by logisticsInfo[{seen[index]}] (VTEX: FMT0089)",
                )
            )
        else:
            seen[index] = i


def invoice_cents(value: Any) -> int | None:
    """Cents from an integer or a string of ASCII digits ("²" passes `isdigit` but is no amount)."""
    if _is_int(value):
        return int(value)
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 16:
        return int(value)
    return None


def validate_invoice(
    invoice: Mapping[str, Any], order_value: int | None, path: str = "invoice", kind: str = "Output"
) -> Problems:
    """One invoice body on its own (`orchestrator.intake.invoices` checks it against the order's
    other invoices): `kind` is the type it must have, `order_value` the most it may be worth."""
    problems: Problems = []
    if invoice.get("type") != kind:
        problems.append(
            (f"{path}.type", 'must be "Output" (the sale invoice; Input invoices are returns)')
            if kind == "Output"
            else (f"{path}.type", 'must be "Input" (a return; Output invoices are sales)')
        )
    _string(invoice, "issuanceDate", path, problems)
    date_time_problem(invoice, "issuanceDate", path, problems)
    number = invoice.get("invoiceNumber")
    if number is None:
        problems.append((f"{path}.invoiceNumber", "is required"))
    elif isinstance(number, str) and len(number) > MAX_INVOICE_NUMBER:
        problems.append((f"{path}.invoiceNumber", f"must be at most {MAX_INVOICE_NUMBER} characters"))
    elif not isinstance(number, str) or not INVOICE_NUMBER.fullmatch(number):
        problems.append(
            (
                f"{path}.invoiceNumber",
                f"{number!r} must contain only letters, digits, '-' and '_': VTEX accepts '/', '#' and "
                "spaces in the invoice but then fails the tracking update and may never mark the order "
                "invoiced",
            )
        )
    cents = invoice_cents(invoice.get("invoiceValue"))
    if invoice.get("invoiceValue") is None:
        problems.append((f"{path}.invoiceValue", "is required"))
    elif cents is None or cents <= 0 or cents > MAX_MONEY:
        problems.append(
            (f"{path}.invoiceValue", "must be a positive amount in cents (an integer or a string of digits)")
        )
    elif order_value is not None and cents > order_value:
        problems.append(
            (
                f"{path}.invoiceValue",
                f"is {cents} but the order is worth {order_value}: an order's invoices may not add up to "
                "more than its value",
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
    date_time_problem(invoice, "dispatchedDate", path, problems)
    return problems


def date_time_problem(obj: Mapping[str, Any], key: str, path: str, problems: Problems) -> None:
    """A date and time VTEX takes (ISO 8601 with a time, e.g. 2024-01-31T18:25:43-05:00): a date
    alone is refused, since VTEX documents date *and* time."""
    value = obj.get(key)
    if not isinstance(value, str):
        return
    valid = DATE_TIME.fullmatch(value) is not None
    if valid:
        try:
            datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            valid = False
    if not valid:
        problems.append(
            (f"{path}.{key}", f"{value!r} must be an ISO 8601 date and time, e.g. 2024-01-31T18:25:43-05:00")
        )


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


def normalise_invoice(invoice: Mapping[str, Any]) -> dict[str, Any]:
    """The invoice as stored: its value an integer of cents (the client sends it as VTEX's spec says)."""
    stored = dict(invoice)
    stored["invoiceValue"] = invoice_cents(invoice["invoiceValue"])
    return stored
