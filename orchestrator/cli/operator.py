"""Commands an operator uses on single orders: invoice, track, retry, cancel."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Annotated

import typer

from orchestrator.cli import exits
from orchestrator.cli.app import app
from orchestrator.cli.support import (
    OperationError,
    err_line,
    json_file,
    out,
    progress,
    step_until_settled,
    store_for,
    tracking_file,
)


@app.command()
def invoice(
    ctx: typer.Context,
    order_id: Annotated[str, typer.Argument(help="The order the invoice belongs to.")],
    number: Annotated[str | None, typer.Option(help="Invoice number (letters and digits).")] = None,
    value: Annotated[int | None, typer.Option(help="Invoice value in cents (the order's value).")] = None,
    issued_at: Annotated[
        str | None, typer.Option(help="Issuance date and time, ISO 8601 (default: now).")
    ] = None,
    url: Annotated[
        str | None, typer.Option(help="Public invoice URL (ending in .xml for VTEX Tracking's XML mode).")
    ] = None,
    key: Annotated[str | None, typer.Option(help="Invoice key (e.g. the NF-e access key).")] = None,
    file: Annotated[Path | None, typer.Option(help="A VTEX invoice notification body, as JSON.")] = None,
) -> None:
    """Attach the invoice of an order imported without one; the daemon sends it when allowed."""
    from orchestrator.ops.operations import attach_invoice, invoice_from_options
    from orchestrator.ops.reconcile_first import reconciling_first

    settings = ctx.obj.logging_settings()
    store = store_for(settings)
    row = store.find(order_id)
    if row is None:
        raise OperationError(f"no order {order_id!r}")
    if file is not None:
        body = json_file(file)
        if not isinstance(body, dict):
            raise OperationError(f"{file}: must hold one JSON object, a VTEX invoice body")
    elif number is not None and value is not None:
        body = invoice_from_options(row, number, value, issued_at=issued_at, url=url, key=key)
    else:
        raise OperationError("give --number and --value, or --file with a VTEX invoice body")
    outcome = reconciling_first(settings, store, order_id, lambda: attach_invoice(store, order_id, body))
    out.print(outcome.message, highlight=False)


@app.command()
def track(
    ctx: typer.Context,
    order_id: Annotated[str | None, typer.Argument(help="The order, e.g. ABC-12345.")] = None,
    tracking_number: Annotated[str | None, typer.Option(help="The carrier's tracking number.")] = None,
    courier: Annotated[str | None, typer.Option(help="The carrier's name.")] = None,
    url: Annotated[str | None, typer.Option(help="Where the customer follows the parcel.")] = None,
    dispatched_at: Annotated[str | None, typer.Option(help="When it was dispatched, ISO 8601.")] = None,
    file: Annotated[
        str | None,
        typer.Option(
            help="JSON Lines of {orderId, trackingNumber, courier, trackingUrl, dispatchedDate}, or -."
        ),
    ] = None,
) -> None:
    """Add a tracking number to an order's invoice (VTEX's partial invoice update), once."""
    from orchestrator.ops.operations import attach_tracking
    from orchestrator.ops.pause import ensure_not_paused
    from orchestrator.ops.reconcile_first import reconciling_first

    settings = ctx.obj.logging_settings()
    store = store_for(settings)
    ensure_not_paused(settings, store)
    if file is not None:
        updates = tracking_file(file, store)
    elif order_id and tracking_number:
        updates = [
            (
                order_id,
                {
                    "trackingNumber": tracking_number,
                    "courier": courier,
                    "trackingUrl": url,
                    "dispatchedDate": dispatched_at,
                },
            )
        ]
    else:
        raise OperationError("give ORDER_ID and --tracking-number, or --file")
    sent = 0
    for target, tracking in progress(updates, "attaching tracking numbers"):
        outcome = reconciling_first(
            settings, store, target, partial(attach_tracking, store, target, tracking)
        )
        if len(updates) == 1:
            out.print(outcome.message, highlight=False)
        row = store.find(target)
        if outcome.changed and row is not None and row.state == "invoiced":
            row = step_until_settled(settings, store, target)
            sent += int(row is not None and row.tracking_sent_at is not None)
    if len(updates) > 1:
        out.print(f"{len(updates)} tracking number(s) attached; {sent} already sent to VTEX")


@app.command()
def retry(
    ctx: typer.Context,
    order_ids: Annotated[
        list[str] | None, typer.Argument(help="Failed orders to put back in the flow.")
    ] = None,
    failed: Annotated[bool, typer.Option("--failed", help="Every failed order.")] = False,
) -> None:
    """Put failed orders back where they failed; each step is reconciled with VTEX before resending."""
    from orchestrator.ops.operations import retry as retry_order
    from orchestrator.ops.reconcile_first import reconciling_first

    settings = ctx.obj.logging_settings()
    store = store_for(settings)
    targets = list(order_ids or [])
    if not targets and not failed:
        raise typer.BadParameter("name the orders to retry, or use --failed")
    if failed:
        targets += store.order_ids_in_state("failed")
        if not targets:
            err_line("no order is failed", "nothing to retry")
            raise typer.Exit(exits.NOTHING_TO_DO)
    for order_id in targets:
        outcome = reconciling_first(settings, store, order_id, partial(retry_order, store, order_id))
        out.print(outcome.message, highlight=False)
    out.print(f"{len(targets)} order(s) back in the flow; a running daemon picks them up on its next tick")


@app.command()
def cancel(
    ctx: typer.Context,
    order_id: Annotated[str, typer.Argument(help="The order to cancel, e.g. ABC-12345.")],
    reason: Annotated[
        str, typer.Option(help="Why, recorded in VTEX and in the history.")
    ] = "canceled by operator",
) -> None:
    """Cancel an order in VTEX (while VTEX still allows it) and mark it canceled."""
    from orchestrator.ops.operations import request_cancel
    from orchestrator.ops.pause import ensure_not_paused

    settings = ctx.obj.logging_settings()
    store = store_for(settings)
    ensure_not_paused(settings, store)
    outcome = request_cancel(store, order_id, reason)
    if not outcome.changed:
        out.print(outcome.message)
        return
    row = step_until_settled(settings, store, order_id, until=lambda r: not r.cancel_reason)
    if row is None:
        out.print(f"cancel of {order_id} requested; the running daemon is working on it and will cancel it")
    elif row.state == "canceled":
        out.print(f"{order_id} canceled")
    elif row.state == "canceling":
        out.print(
            f"VTEX accepted the cancellation of {order_id} and processes it; the order waits in canceling "
            "until VTEX shows it canceled (or denied)"
        )
    elif not row.cancel_reason:
        err_line(
            f"{row.last_error}; the order carries on as {row.state}", f"VTEX refused to cancel {order_id}"
        )
        raise typer.Exit(exits.REFUSED)
    else:
        out.print(f"cancel of {order_id} requested: {row.wait_reason or 'the daemon will finish it'}")
