"""`orchestrator list`: every order, filtered, sorted and paged, as a table, JSON or CSV."""

from __future__ import annotations

import csv
import json
import sys
from typing import Annotated

import typer

from orchestrator.cli import exits
from orchestrator.cli.app import app
from orchestrator.cli.support import ConfigurationError, err_line, out, store_for


@app.command("list")
def list_command(
    ctx: typer.Context,
    state: Annotated[
        list[str] | None, typer.Option(help="Only these states (repeatable, or comma-separated).")
    ] = None,
    affiliate: Annotated[str | None, typer.Option(help="Only this affiliate id.")] = None,
    older_than: Annotated[
        str | None, typer.Option(help="Only orders in their state for longer than this (e.g. 2h).")
    ] = None,
    code: Annotated[
        str | None, typer.Option("--code", help="Only orders whose last error has this code (e.g. FMT007).")
    ] = None,
    waiting: Annotated[
        str | None, typer.Option(help="Only orders whose wait reason contains these words.")
    ] = None,
    find: Annotated[
        str | None,
        typer.Option(help="Only orders with this order id, marketplace order id or invoice number."),
    ] = None,
    search: Annotated[
        str | None,
        typer.Option(help="Only orders with this in an id, an invoice number or the customer's name."),
    ] = None,
    account: Annotated[str | None, typer.Option(help="Only this configured account's orders.")] = None,
    partly_invoiced: Annotated[
        bool,
        typer.Option("--partly-invoiced", help="Only orders VTEX took some invoices of, not invoiced yet."),
    ] = False,
    returned: Annotated[
        bool, typer.Option("--returned", help="Only orders with a return (Input invoice) VTEX took.")
    ] = False,
    sort: Annotated[
        str, typer.Option(help="created, changed or order-id; a leading - sorts descending.")
    ] = "-created",
    limit: Annotated[int, typer.Option(min=1, max=10000, help="Orders per page.")] = 50,
    after: Annotated[str | None, typer.Option(help="The cursor the previous page printed.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON: {orders, nextCursor}.")] = False,
    as_csv: Annotated[bool, typer.Option("--csv", help="CSV with a header line.")] = False,
) -> None:
    """List orders: filter by state, affiliate, age, error code, wait, partial invoicing or returns;
    newest first by default."""
    from orchestrator.clock import utcnow
    from orchestrator.durations import parse_duration
    from orchestrator.ops.views import SUMMARY_KEYS, order_summary
    from orchestrator.store.listing import CursorError, OrderFilter, parse_sort, parse_states

    if as_json and as_csv:
        raise typer.BadParameter("--json and --csv: choose one")
    try:
        sort_name, descending = parse_sort(sort)
    except ValueError as exc:
        raise ConfigurationError(f"--sort: {exc}") from None
    try:
        older = parse_duration(older_than) if older_than else None
    except ValueError as exc:
        raise ConfigurationError(f"--older-than: {exc}") from None
    try:
        states = parse_states(state or [])
    except ValueError as exc:
        raise ConfigurationError(f"--state: {exc}") from None
    settings = ctx.obj.settings()
    if account is not None:
        settings.account(account)  # an unknown account is a usage error, not an empty list
    where = OrderFilter(
        states, affiliate, older, code, waiting, account, partly_invoiced, returned, text=search or None
    )
    store = store_for(settings)
    now = utcnow()
    if find:
        rows = [r for r in store.find_any(find, limit=limit) if where.matches(r, now)]
        next_cursor = None
    else:
        try:
            page = store.list_orders(
                now, where, sort=sort_name, descending=descending, limit=limit, after=after
            )
        except CursorError as exc:
            raise ConfigurationError(str(exc)) from None
        rows, next_cursor = page.rows, page.next_cursor
    entries = [order_summary(row, now) for row in rows]
    if as_json:
        typer.echo(json.dumps({"orders": entries, "nextCursor": next_cursor}, indent=2))
    elif as_csv:
        writer = csv.DictWriter(sys.stdout, fieldnames=SUMMARY_KEYS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(entries)
    elif entries:
        from orchestrator.ops.render import orders_table

        out.print(orders_table(rows, now))
    if next_cursor and not as_json:
        err_line(f"more orders: add --after {next_cursor}", "next page")
    if not entries:
        if not as_json:
            err_line("no order matches", "nothing found")
        raise typer.Exit(exits.NOTHING_TO_DO)
