"""Commands an operator uses to move orders on or stop them: retry, cancel."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from orchestrator.cli import exits
from orchestrator.cli.app import app
from orchestrator.cli.support import (
    NotFound,
    OperationError,
    Report,
    err_line,
    json_option,
    step_until_settled,
    store_for,
)


@app.command()
def retry(
    ctx: typer.Context,
    order_ids: Annotated[
        list[str] | None,
        typer.Argument(help="Failed orders to put back in the flow (any id `show` takes)."),
    ] = None,
    failed: Annotated[bool, typer.Option("--failed", help="Every failed order.")] = False,
    as_json: Annotated[bool, json_option()] = False,
) -> None:
    """Put failed orders back where they failed; each step is reconciled with VTEX before resending."""
    from orchestrator.ops.operations import retry_change
    from orchestrator.ops.reconcile_first import reconciling_first_once

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
    targets = [store.the_order(key).ref for key in targets]  # any id `show` takes
    report = Report(as_json)
    for order_id in targets:
        outcome = reconciling_first_once(settings, store, order_id, retry_change(order_id, settings))
        report.line(outcome.message, orderId=order_id, changed=outcome.changed)
    report.note(f"{len(targets)} order(s) back in the flow; a running daemon picks them up on its next tick")
    report.done(retried=len(targets))


@app.command()
def cancel(
    ctx: typer.Context,
    order_ids: Annotated[
        list[str],
        typer.Argument(help="The orders to cancel: order id, marketplace order id or invoice number."),
    ],
    reason: Annotated[
        str, typer.Option(help="Why, recorded in VTEX and in the history.")
    ] = "canceled by operator",
    as_json: Annotated[bool, json_option()] = False,
) -> None:
    """Cancel orders in VTEX (while VTEX still allows it) and mark them canceled."""
    from orchestrator.ops.pause import ensure_orders_not_paused

    settings = ctx.obj.logging_settings()
    store = store_for(settings)
    resolved: dict[str, str | OperationError | NotFound]  # each order looked up once, by any id
    if len(order_ids) == 1:  # alone, an unknown id is exit 4, as for `show`
        resolved = {order_ids[0]: store.the_order(order_ids[0]).ref}
    else:
        resolved = {key: _resolved(store, key) for key in order_ids}
    ensure_orders_not_paused(settings, store, [r for r in resolved.values() if isinstance(r, str)])
    refused = 0
    report = Report(as_json)
    for order_id, ref in resolved.items():
        try:
            if not isinstance(ref, str):
                raise ref
            refused += not _cancel_one(settings, store, ref, reason, report)
        except (OperationError, NotFound) as exc:  # one order's refusal does not stop the others
            if as_json:
                report.line(str(exc), orderId=order_id, outcome="refused")
            else:
                err_line(str(exc), f"not canceled: {order_id}")
            refused += 1
    report.done(refused=refused)
    if refused:
        raise typer.Exit(exits.REFUSED)


def _resolved(store: Any, key: str) -> str | OperationError | NotFound:
    """The order `key` names, as its ref, or why there is none (reported with the others)."""
    try:
        return str(store.the_order(key).ref)
    except (OperationError, NotFound) as exc:
        return exc


def _cancel_one(settings: Any, store: Any, order_id: str, reason: str, report: Report) -> bool:
    """Request the cancel and step the order until VTEX has answered; False if VTEX refused."""
    from orchestrator.ops.operations import request_cancel

    outcome = request_cancel(store, order_id, reason)
    if not outcome.changed:
        report.line(outcome.message, orderId=order_id, outcome="unchanged")
        return True
    row = step_until_settled(settings, store, order_id, until=lambda r: not r.cancel_reason)
    if row is None:
        report.line(
            f"cancel of {order_id} requested; the running daemon is working on it and will cancel it",
            orderId=order_id,
            outcome="requested",
        )
    elif row.state == "canceled":
        report.line(f"{order_id} canceled", orderId=order_id, outcome="canceled")
    elif row.state == "canceling":
        report.line(
            f"VTEX accepted the cancellation of {order_id} and processes it; the order waits in canceling "
            "until VTEX shows it canceled (or denied)",
            orderId=order_id,
            outcome="canceling",
        )
    elif not row.cancel_reason:
        message = f"{row.last_error}; the order carries on as {row.state}"
        if report.as_json:
            report.line(message, orderId=order_id, outcome="refused-by-vtex")
        else:
            err_line(message, f"VTEX refused to cancel {order_id}")
        return False
    else:
        report.line(
            f"cancel of {order_id} requested: {row.wait_reason or 'the daemon will finish it'}",
            orderId=order_id,
            outcome="requested",
        )
    return True
