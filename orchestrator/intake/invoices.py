"""Rules an order's invoices must keep together, as VTEX states them: Output invoices never add
up to more than the order's value, nor invoice an item the order does not have or more of it than
was ordered; a return (an Input invoice) only gives back what was invoiced and not returned yet.
Each body has passed `validation.validate_invoice` on its own first; these are checked before
anything is stored, so nothing is sent that VTEX would have to refuse or that would over-invoice.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from orchestrator.intake.validation import Problems, invoice_cents
from states import invoices
from states.invoices import Entry


def _body_quantities(body: Mapping[str, Any]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for item in body.get("items") or ():
        sku = str(item.get("id"))
        counts[sku] = counts.get(sku, 0) + int(item.get("quantity") or 0)
    return counts


def number_problems(
    bodies: Sequence[Mapping[str, Any]], entries: Iterable[Entry] | None, paths: Sequence[str]
) -> Problems:
    """Invoice numbers repeated among `bodies`, or already an invoice of the order (the caller
    first takes an identical resend as the idempotent no-op it is)."""
    problems: Problems = []
    seen = {e["number"]: e["type"] for e in entries or ()}
    for i, body in enumerate(bodies):
        number = body.get("invoiceNumber")
        if number in seen:
            problems.append(
                (
                    f"{paths[i]}.invoiceNumber",
                    f"{number!r} is already an invoice of this order ({seen[number]}) with a different "
                    "body: VTEX keeps the first body under a number, so a change needs a new number",
                )
            )
        seen[number] = body.get("type", "")
    return problems


def output_problems(
    bodies: Sequence[Mapping[str, Any]],
    entries: Iterable[Entry] | None,
    ordered: Mapping[str, int],
    limit: int,
    paths: Sequence[str],
) -> Problems:
    """New Output invoices `bodies` (each named by its path in `paths`) against the order's
    invoices so far, the items it ordered and the value its invoices must not pass (VTEX's value
    once seen, else ours)."""
    entries = list(entries or ())
    problems = number_problems(bodies, entries, paths)
    so_far = invoices.total(entries, invoices.OUTPUT)
    counts = invoices.quantities(entries, invoices.OUTPUT)
    for i, body in enumerate(bodies):
        where = paths[i]
        so_far += invoice_cents(body.get("invoiceValue")) or 0
        if so_far > limit:
            problems.append(
                (
                    f"{where}.invoiceValue",
                    f"would bring the order's Output invoices to {so_far}, more than its value {limit}: "
                    "VTEX invoices an order up to its value and no further",
                )
            )
        for sku, quantity in _body_quantities(body).items():
            if sku not in ordered:
                problems.append((f"{where}.items", f"SKU {sku!r} is not an item of this order"))
                continue
            counts[sku] = counts.get(sku, 0) + quantity
            if counts[sku] > ordered[sku]:
                problems.append(
                    (
                        f"{where}.items",
                        f"SKU {sku!r}: the order's invoices would hold {counts[sku]}, more than the "
                        f"{ordered[sku]} ordered",
                    )
                )
    return problems


def return_problems(body: Mapping[str, Any], entries: Iterable[Entry] | None, path: str) -> Problems:
    """A new return (Input invoice) against what the order's Output invoices invoiced and its
    returns so far gave back."""
    entries = list(entries or ())
    problems = number_problems([body], entries, [path])
    left = invoices.total(entries, invoices.OUTPUT) - invoices.total(entries, invoices.INPUT)
    value = invoice_cents(body.get("invoiceValue")) or 0
    if value > left:
        problems.append(
            (
                f"{path}.invoiceValue",
                f"is {value}, more than the {left} invoiced and not yet returned",
            )
        )
    invoiced = invoices.quantities(entries, invoices.OUTPUT)
    returned = invoices.quantities(entries, invoices.INPUT)
    for sku, quantity in _body_quantities(body).items():
        if sku not in invoiced:
            problems.append((f"{path}.items", f"SKU {sku!r} was not invoiced for this order"))
        elif returned.get(sku, 0) + quantity > invoiced[sku]:
            problems.append(
                (
                    f"{path}.items",
                    f"SKU {sku!r}: {returned.get(sku, 0) + quantity} would be returned, more than the "
                    f"{invoiced[sku]} invoiced",
                )
            )
    return problems
