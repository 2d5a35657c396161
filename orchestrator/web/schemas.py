"""The API's bodies as types: what each route takes and answers. The handlers build their answers
as these (mypy checks the keys), and the OpenAPI document is written from the same types
(`orchestrator.web.spec`), so the document cannot say less than the code does.

VTEX's own bodies (the order to place, the invoice) are described by their fields here only as
far as the orchestrator reads them; VTEX's OpenAPI files have the rest.
"""

from __future__ import annotations

from typing import Any, NotRequired

from typing_extensions import TypedDict  # pydantic reads these for the OpenAPI document (3.11)

from orchestrator.ops.status import StatusReport
from orchestrator.ops.views import EventJson, OrderSummary

# -- what a client sends ---------------------------------------------------------------------


class OrderRecord(TypedDict):
    """One order to import, as one line of `orchestrator import` takes it."""

    affiliateId: str  # three letters or digits: the marketplace's affiliate in VTEX
    order: dict[str, Any]  # VTEX's Place fulfillment order body (placeFulfillmentOrderRequest)
    invoices: NotRequired[list[Invoice]]  # Output invoices, in the order they go out
    invoice: NotRequired[Invoice]  # one invoice: the same as `invoices` with one
    salesChannel: NotRequired[str]  # VTEX's `sc`
    account: NotRequired[str]  # a configured account; the first one when absent


class InvoiceItem(TypedDict):
    id: str
    price: int  # cents
    quantity: int


class Invoice(TypedDict):
    """VTEX's invoice notification body: an Output invoice (a sale: one for the whole order, or
    one of several partial ones), or an Input invoice (a return, once the order is invoiced)."""

    type: str  # "Output" (the invoice routes) or "Input" (returns)
    invoiceNumber: str
    invoiceValue: int  # cents: an order's Output invoices add up to its value
    issuanceDate: str  # date and time, ISO 8601
    items: list[InvoiceItem]
    invoiceKey: NotRequired[str]
    invoiceUrl: NotRequired[str]
    embeddedInvoice: NotRequired[str]
    courier: NotRequired[str]
    trackingNumber: NotRequired[str]
    trackingUrl: NotRequired[str]
    dispatchedDate: NotRequired[str]


class Tracking(TypedDict):
    """A tracking number for one of the order's invoices (VTEX's partial invoice update)."""

    trackingNumber: str
    invoiceNumber: NotRequired[str]  # which invoice: needed when the order has several
    courier: NotRequired[str | None]
    trackingUrl: NotRequired[str | None]
    dispatchedDate: NotRequired[str | None]  # date and time, ISO 8601


class CancelRequest(TypedDict, total=False):
    reason: str  # recorded in VTEX and in the history; the token's name when absent


# -- what the API answers --------------------------------------------------------------------


class Problem(TypedDict):
    """One thing wrong with what was sent: the record (its index in the body) and the field."""

    field: str
    message: str
    index: NotRequired[int]


class ErrorBody(TypedDict):
    """Every refusal: what is wrong and what to do, with the problems or the matching orders when
    there are several."""

    error: str
    problems: NotRequired[list[Problem]]
    matches: NotRequired[list[str]]


class Replaced(TypedDict):
    orderId: str
    was: str  # the state it was in


class ImportAnswer(TypedDict):
    imported: list[str]
    replaced: list[Replaced]
    alreadyPresent: list[str]


class Outcome(TypedDict):
    """What an action on one order did (`changed` false: it was done already, nothing new)."""

    orderId: str
    changed: bool
    message: str


class OrderList(TypedDict):
    orders: list[OrderSummary]
    nextCursor: str | None  # pass as `after` for the next page; null on the last


class OrderDetail(TypedDict):
    order: dict[str, Any]  # every column of the order, camelCase, times in ISO 8601 UTC
    events: list[EventJson]
    vtex: NotRequired[dict[str, Any] | None]  # with ?vtex=1: VTEX's Get order answer
    vtexError: NotRequired[str | None]  # with ?vtex=1: why VTEX's view could not be had


class Health(TypedDict):
    status: str
    error: NotRequired[str]


__all__ = [
    "CancelRequest",
    "ErrorBody",
    "Health",
    "ImportAnswer",
    "Invoice",
    "OrderDetail",
    "OrderList",
    "OrderRecord",
    "Outcome",
    "Problem",
    "StatusReport",
    "Tracking",
]
