"""Late data: the invoices, tracking numbers and returns an order gets after it was imported, for
one order or for a file of many (checked whole, then written in one transaction, or not at all)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from orchestrator.cli.app import app
from orchestrator.cli.support import (
    OperationError,
    Report,
    json_file,
    json_option,
    progress,
    step_until_settled,
    store_for,
)


def _file_lines(file: str, entry_problems: Any, build: Any) -> list[Any]:
    """Every line of a JSON Lines file read and checked for shape; the lines to apply, or
    BatchRefused naming each problem's line and field."""
    from orchestrator.intake.importer import parse_json
    from orchestrator.intake.line_input import LineInput
    from orchestrator.ops.batch import BatchRefused

    lines, problems = [], []
    with LineInput.open(file) as source:
        for number, raw in enumerate(source(), 1):
            if not raw.strip():
                continue
            entry, unreadable = parse_json(number, raw)
            if unreadable:
                problems += [str(p) for p in unreadable]
                continue
            if not isinstance(entry, dict) or not isinstance(entry.get("orderId"), str):
                problems.append(f"line {number}: orderId: is required")
                continue
            problems += [f"line {number}: {field}: {message}" for field, message in entry_problems(entry)]
            lines.append(build(number, entry))
    if problems:
        raise BatchRefused(problems, "changed")
    if not lines:
        raise OperationError(f"nothing changed: {file} holds no lines")
    return lines


def _one_body(file: str, what: str) -> dict[str, Any]:
    """The one JSON object `file` holds (an invoice or a return for one order)."""
    body = json_file(Path(file))
    if not isinstance(body, dict):
        raise OperationError(f"{file}: must hold one JSON object, {what}")
    return body


def _apply(settings: Any, store: Any, lines: list[Any], what: str, dry_run: bool) -> list[Any]:
    """Apply the lines all at once; orders with a VTEX call of unknown outcome on that step are
    settled with VTEX first (as the daemon would), then everything is checked again."""
    from orchestrator.ops.batch import OpenIntents, apply_all
    from orchestrator.ops.pause import ensure_orders_not_paused
    from orchestrator.ops.step_now import step_order_now_once

    try:
        return apply_all(store, lines, what=what, dry_run=dry_run)
    except OpenIntents as open_intents:
        if dry_run:
            raise OperationError(
                f"nothing {what}: {open_intents} have a VTEX call of unknown outcome on that step; "
                "the real run asks VTEX first"
            ) from None
        ensure_orders_not_paused(settings, store, open_intents.order_ids)
        for order_id in open_intents.order_ids:
            step_order_now_once(settings, store, order_id)
    try:
        return apply_all(store, lines, what=what)
    except OpenIntents as still_open:
        raise OperationError(still_open.refusal()) from None


def _report(planned: list[Any], dry_run: bool, noun: str, report: Report) -> None:
    prefix = "would be: " if dry_run else ""
    for entry in planned:
        if len(planned) == 1 or dry_run or report.as_json:
            report.line(
                f"{prefix}{entry.message}", line=entry.line, orderId=entry.order_id, changed=entry.changed
            )
    changed = sum(entry.changed for entry in planned)
    if len(planned) > 1:
        verb = "would be attached" if dry_run else "attached"
        report.note(f"{changed} {noun}(s) {verb}; {len(planned) - changed} unchanged")


@app.command()
def invoice(
    ctx: typer.Context,
    order_id: Annotated[str | None, typer.Argument(help="The order the invoice belongs to.")] = None,
    number: Annotated[str | None, typer.Option(help="Invoice number (letters and digits).")] = None,
    value: Annotated[
        int | None,
        typer.Option(help="Invoice value in cents (an order's invoices add up to its value: several may)."),
    ] = None,
    issued_at: Annotated[
        str | None, typer.Option(help="Issuance date and time, ISO 8601 (default: now).")
    ] = None,
    url: Annotated[
        str | None, typer.Option(help="Public invoice URL (ending in .xml for VTEX Tracking's XML mode).")
    ] = None,
    key: Annotated[str | None, typer.Option(help="Invoice key (e.g. the NF-e access key).")] = None,
    file: Annotated[
        str | None,
        typer.Option(
            help="With ORDER_ID: one VTEX invoice body (JSON). Without: JSON Lines of "
            "{orderId, invoice}, or - for standard input, all or nothing."
        ),
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Check everything; change nothing.")] = False,
    as_json: Annotated[bool, json_option()] = False,
) -> None:
    """Attach an invoice to an order: its first, or one more (a partial invoice, a split shipment).
    The daemon sends each once, when allowed; the order is invoiced when they reach its value.
    The same invoice again changes nothing; another body under a number it holds is refused."""
    from orchestrator.intake.validation import validate_invoice
    from orchestrator.ops.batch import Line
    from orchestrator.ops.operations import invoice_change, invoice_from_options

    settings = ctx.obj.logging_settings()
    store = store_for(settings)
    if order_id is None and file is not None:

        def problems(entry: dict[str, Any]) -> list[tuple[str, str]]:
            body = entry.get("invoice")
            if not isinstance(body, dict):
                return [("invoice", "is required (a VTEX invoice body)")]
            unknown = sorted(set(entry) - {"orderId", "invoice"})
            return validate_invoice(body, None) + [
                (name, "unknown field (expected orderId, invoice)") for name in unknown
            ]

        lines = _file_lines(
            file, problems, lambda n, e: Line(n, e["orderId"], invoice_change(e["orderId"], e["invoice"]))
        )
    elif order_id is not None:
        row = store.the_order(order_id)  # any id `show` takes
        order_id = row.ref
        if file is not None:
            body = _one_body(file, "a VTEX invoice body")
        elif number is not None and value is not None:
            body = invoice_from_options(row, number, value, issued_at=issued_at, url=url, key=key)
        else:
            raise OperationError("give --number and --value, or --file with a VTEX invoice body")
        lines = [Line(1, order_id, invoice_change(order_id, body))]
    else:
        raise OperationError("give ORDER_ID with --number and --value (or --file), or --file of many")
    report = Report(as_json)
    _report(_apply(settings, store, lines, "attached", dry_run), dry_run, "invoice", report)
    report.done(dryRun=dry_run)


@app.command()
def track(
    ctx: typer.Context,
    order_id: Annotated[str | None, typer.Argument(help="The order, e.g. ABC-12345.")] = None,
    tracking_number: Annotated[str | None, typer.Option(help="The carrier's tracking number.")] = None,
    courier: Annotated[str | None, typer.Option(help="The carrier's name.")] = None,
    url: Annotated[str | None, typer.Option(help="Where the customer follows the parcel.")] = None,
    dispatched_at: Annotated[str | None, typer.Option(help="When it was dispatched, ISO 8601.")] = None,
    invoice_number: Annotated[
        str | None,
        typer.Option(
            "--invoice", help="The invoice the parcel belongs to (needed when the order has several)."
        ),
    ] = None,
    file: Annotated[
        str | None,
        typer.Option(
            help="JSON Lines of {orderId, invoiceNumber, trackingNumber, courier, trackingUrl, "
            "dispatchedDate}, or -; all or nothing."
        ),
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Check everything; change nothing.")] = False,
    as_json: Annotated[bool, json_option()] = False,
) -> None:
    """Add tracking numbers to orders' invoices, each sent once: inside the invoice when it has not
    gone out yet, else by VTEX's partial invoice update once the order is invoiced."""
    from orchestrator.ops.batch import Line
    from orchestrator.ops.operations import tracking_change, tracking_problems
    from orchestrator.ops.pause import ensure_orders_not_paused

    settings = ctx.obj.logging_settings()
    store = store_for(settings)
    if file is not None:
        lines = _file_lines(
            file, tracking_problems, lambda n, e: Line(n, e["orderId"], tracking_change(e["orderId"], e))
        )
    elif order_id and tracking_number:
        tracking = {
            "trackingNumber": tracking_number,
            "courier": courier,
            "trackingUrl": url,
            "dispatchedDate": dispatched_at,
        }
        ref = store.the_order(order_id).ref  # any id `show` takes
        lines = [Line(1, ref, tracking_change(ref, tracking, invoice_number))]
    else:
        raise OperationError("give ORDER_ID and --tracking-number, or --file")
    if not dry_run:
        ensure_orders_not_paused(settings, store, [line.order_id for line in lines])
    planned = _apply(settings, store, lines, "attached", dry_run)
    report = Report(as_json)
    _report(planned, dry_run, "tracking number", report)
    if dry_run:
        report.done(dryRun=True, sent=0)
        return
    sent = 0
    for entry in progress([p for p in planned if p.changed], "sending tracking numbers"):
        row = store.find(entry.order_id)
        if row is not None and row.state == "invoiced":
            row = step_until_settled(settings, store, entry.order_id)
            sent += int(row is not None and row.tracking_sent)
    if len(planned) > 1:
        report.note(f"{sent} sent to VTEX now; the daemon sends the others once their orders are invoiced")
    report.done(dryRun=False, sent=sent)


@app.command(name="return")
def return_(
    ctx: typer.Context,
    order_id: Annotated[str, typer.Argument(help="The invoiced order the customer returned items of.")],
    file: Annotated[
        str | None, typer.Option(help='The return: one VTEX invoice body with "type": "Input" (JSON).')
    ] = None,
    number: Annotated[str | None, typer.Option(help="Without --file: the return invoice's number.")] = None,
    value: Annotated[
        int | None, typer.Option(help="Without --file: its value in cents (every invoiced item comes back).")
    ] = None,
    issued_at: Annotated[
        str | None, typer.Option(help="Issuance date and time, ISO 8601 (default: now).")
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Check everything; change nothing.")] = False,
    as_json: Annotated[bool, json_option()] = False,
) -> None:
    """Register a return of an invoiced order: an Input invoice, sent to VTEX once, which makes
    VTEX refund it. Items and value stay within what was invoiced and not yet returned; the same
    return again changes nothing. The order stays invoiced and shows as (partly) returned."""
    from orchestrator.ops.batch import Line
    from orchestrator.ops.operations import return_change, return_from_options

    settings = ctx.obj.logging_settings()
    store = store_for(settings)
    row = store.the_order(order_id)  # any id `show` takes
    order_id = row.ref
    if file is not None:
        body = _one_body(file, "a VTEX invoice body of type Input")
    elif number is not None and value is not None:
        body = return_from_options(row, number, value, issued_at=issued_at)
    else:
        raise OperationError("give --file with an Input invoice body, or --number and --value")
    lines = [Line(1, order_id, return_change(order_id, body))]
    report = Report(as_json)
    _report(_apply(settings, store, lines, "registered", dry_run), dry_run, "return", report)
    report.done(dryRun=dry_run)
