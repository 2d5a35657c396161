"""Commands about orders: import, run, status, show, and the schema they live in."""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING, Annotated, Any

import typer

from orchestrator.cli import exits
from orchestrator.cli.app import app
from orchestrator.cli.support import (
    UNBOUNDED,
    ConfigurationError,
    err,
    err_line,
    json_option,
    out,
    store_for,
)
from orchestrator.clock import utcnow
from orchestrator.durations import parse_duration

if TYPE_CHECKING:
    from orchestrator.ops.status import StatusReport


@app.command("import")
def import_command(
    ctx: typer.Context,
    file: Annotated[str, typer.Argument(help="JSON Lines file of orders, or - for standard input.")],
    show: Annotated[
        bool | None, typer.Option("--progress/--no-progress", help="Progress bars (default: on a terminal).")
    ] = None,
    replace: Annotated[
        bool,
        typer.Option(
            "--replace", help="Correct stored orders VTEX never accepted (refused, or not yet placed)."
        ),
    ] = False,
    dry_run: Annotated[
        bool,
        typer.Option("--dry-run", help="Check everything, against the stored orders too; write nothing."),
    ] = False,
    as_json: Annotated[bool, json_option()] = False,
) -> None:
    """Import orders: one JSON object per line, all or nothing."""
    from orchestrator.cli.progress import import_progress, show_progress
    from orchestrator.intake.importer import import_lines
    from orchestrator.intake.line_input import LineInput

    settings = ctx.obj.settings()
    with LineInput.open(file) as source:
        total = source.count()
        store = store_for(settings, create=not dry_run)
        with import_progress(err, show_progress(show, err) and total >= 1000) as progress:
            report = import_lines(
                source,
                store,
                utcnow(),
                worker=settings.worker_id,
                progress=progress,
                total=total,
                replace=replace,
                accounts=list(settings.all_accounts),
                dry_run=dry_run,
            )
    if len(report.imported) >= 1000 and not dry_run:
        store.optimize()  # many new rows: refresh the planner's statistics now
    if as_json:
        _import_json(report, dry_run)
    if not report.ok:
        for problem in report.problems:
            err.print(str(problem), highlight=False, markup=False, soft_wrap=True)
        more = report.problems_total - len(report.problems)
        if more > 0:
            err.print(f"... and {more} more problem(s)", highlight=False, soft_wrap=True)
        err_line(
            f"{report.problems_total} problem(s) in {report.lines} line(s); fix them and import again",
            "nothing imported",
        )
        raise typer.Exit(exits.REFUSED)
    if report.empty:
        err_line(f"{source.name} holds no orders (it is empty, or only blank lines)", "nothing imported")
        raise typer.Exit(exits.NOTHING_TO_DO)
    for order_id in report.already_present[:20]:
        out.print(f"already imported, unchanged: {order_id}", highlight=False)
    if len(report.already_present) > 20:
        out.print(f"... and {len(report.already_present) - 20} more already imported, unchanged")
    for replaced in report.replaced[:20]:
        out.print(
            f"replaced: {replaced.order_id} (was {replaced.was}); it will be placed again", highlight=False
        )
    if len(report.replaced) > 20:
        out.print(f"... and {len(report.replaced) - 20} more replaced")
    out.print(
        ("dry run, nothing written: would have " if dry_run else "")
        + f"imported {len(report.imported)} order(s)"
        + (f"; {len(report.replaced)} replaced" if report.replaced else "")
        + (f"; {len(report.already_present)} already present, unchanged" if report.already_present else "")
    )


def _import_json(report: Any, dry_run: bool) -> None:
    """`import --json`: the whole outcome as one object; the exit code still says how it went."""
    problems = [{"line": p.line, "field": p.field, "message": p.message} for p in report.problems]
    typer.echo(
        json.dumps(
            {
                "imported": report.imported,
                "replaced": [{"orderId": r.order_id, "was": r.was} for r in report.replaced],
                "alreadyPresent": report.already_present,
                "problems": problems,
                "problemsTotal": report.problems_total,
                "lines": report.lines,
                "dryRun": dry_run,
            },
            indent=2,
        )
    )
    if not report.ok:
        raise typer.Exit(exits.REFUSED)
    raise typer.Exit(exits.NOTHING_TO_DO if report.empty else exits.OK)


@app.command()
def run(
    ctx: typer.Context,
    until_done: Annotated[
        bool, typer.Option("--until-done", help="Exit once no order can progress without outside input.")
    ] = False,
    concurrency: Annotated[int | None, typer.Option(help="Orders stepped at the same time.")] = None,
    metrics_port: Annotated[
        int | None, typer.Option(help="Serve Prometheus /metrics and /healthz on this port.")
    ] = None,
    show: Annotated[
        bool | None,
        typer.Option(
            "--progress/--no-progress", help="Live progress with --until-done (default: on a terminal)."
        ),
    ] = None,
    as_json: Annotated[bool, json_option()] = False,
) -> None:
    """Run the daemon: step due orders until SIGTERM/SIGINT (or until done)."""
    from orchestrator.cli.progress import run_with_progress, show_progress
    from orchestrator.log import get_logger
    from orchestrator.runner import run_daemon
    from orchestrator.store.patience import BATCH_PATIENCE, DAEMON_PATIENCE, patiently

    settings = ctx.obj.logging_settings(concurrency=concurrency, metrics_port=metrics_port)
    _raise_descriptor_limit()
    log = get_logger()
    # A daemon rides through a database that is briefly away, start-up included.
    patience = BATCH_PATIENCE if until_done else DAEMON_PATIENCE
    store = store_for(settings, create=True, log=log, patience=patience)
    running = run_daemon(settings, store, until_done=until_done)
    if until_done and show_progress(show, err):
        daemon = asyncio.run(run_with_progress(err, store, running))
    else:
        daemon = asyncio.run(running)
    failed = (
        len(patiently(lambda: store.order_ids_in_state("failed"), what="counting failed orders", log=log))
        if until_done
        else 0
    )
    if as_json:
        summary = {
            "stopReason": daemon.stop_reason,
            "stopError": daemon.stop_error,
            "stepsDone": daemon.steps_done,
        }
        typer.echo(json.dumps({**summary, "failed": failed}, indent=2))
    if daemon.stop_error:
        err_line(daemon.stop_error, "stopped")
        raise typer.Exit(exits.FAILED)
    if daemon.stopped_paused:
        err_line(daemon.stop_reason or "account paused", "stopped")
        raise typer.Exit(exits.PAUSED)
    if until_done and failed:
        err_line(f"{failed} order(s) failed: `orchestrator status --stuck` says why", "done")
        raise typer.Exit(exits.FAILURES_LEFT)


def _raise_descriptor_limit() -> None:
    """Connections to VTEX, the database and the probes all take descriptors; the default soft
    limit (often 1024) is a trap for a busy daemon, and the hard limit is ours to use."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 65536 if hard == resource.RLIM_INFINITY else min(hard, 65536)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


@app.command()
def status(
    ctx: typer.Context,
    stuck: Annotated[
        bool, typer.Option("--stuck", help="List the stuck orders, why, and what to do.")
    ] = False,
    state: Annotated[list[str] | None, typer.Option(help="Only these states (repeatable).")] = None,
    affiliate: Annotated[str | None, typer.Option(help="Only this affiliate id.")] = None,
    older_than: Annotated[
        str | None, typer.Option(help="Only orders in their state for longer (e.g. 2h).")
    ] = None,
    stuck_after: Annotated[
        str | None, typer.Option(help="Thresholds, e.g. 45m or handling=4h,imported=30m (default: settings).")
    ] = None,
    limit: Annotated[int, typer.Option(help="At most this many stuck orders listed.")] = 100,
    account: Annotated[
        str | None, typer.Option(help="Only this configured account's counts and stuck orders.")
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the report as JSON (shape in docs/commands.md).")
    ] = False,
    fail_on_stuck: Annotated[
        bool, typer.Option("--fail-on-stuck", help="Exit 5 when any order is stuck (for cron and CI).")
    ] = False,
) -> None:
    """Counts per state with the oldest order in each; with --stuck, the orders that need a look."""
    from orchestrator.config.stuck_rules import StuckRules, StuckRulesError
    from orchestrator.ops import render
    from orchestrator.ops.status import report

    if not stuck and (state or affiliate or older_than):
        raise ConfigurationError(
            "--state, --affiliate and --older-than filter the stuck orders: add --stuck, "
            "or list any orders with `orchestrator list`"
        )
    settings = ctx.obj.settings()
    if account is not None:
        settings.account(account)  # an unknown account is a usage error, not an empty report
    try:
        rules = (
            StuckRules.parse(stuck_after, settings.longest_grace, settings.unknown_outcome_after)
            if stuck_after
            else settings.stuck_rules
        )
    except StuckRulesError as exc:
        raise ConfigurationError(str(exc).replace("ORCHESTRATOR_STUCK_AFTER", "--stuck-after")) from None
    try:
        older = parse_duration(older_than) if older_than else None
    except ValueError as exc:
        raise ConfigurationError(f"--older-than: {exc}") from None
    now = utcnow()
    data = report(
        store_for(settings),
        now,
        rules,
        settings.grace_period,
        states=state,
        affiliate=affiliate,
        older_than=older,
        limit=limit,
        accounts=settings.account_graces,
        names=settings.account_names,
        account=account,
    )
    if as_json:
        typer.echo(json.dumps(data, indent=2))
        _exit_if_stuck(fail_on_stuck, data)
        return
    for line in render.account_lines(data, now):
        out.print(line)
    if stuck:
        if data["stuck"] and out.width >= UNBOUNDED:
            out.print(render.stuck_table(data, now))  # piped for a script: one whole line per order
        elif data["stuck"]:
            for line in render.stuck_blocks(data, now, out.width):
                out.print(line, soft_wrap=True)  # never re-wrapped: a command stays whole
        else:
            out.print("No stuck orders.")
        _exit_if_stuck(fail_on_stuck, data)
        return
    out.print(render.counts_table(data))
    if data["stuckTotal"]:
        out.print(
            f"{data['stuckTotal']} stuck order(s): `orchestrator status --stuck` says why and what to do."
        )
    else:
        out.print("No stuck orders.")
    _exit_if_stuck(fail_on_stuck, data)


def _exit_if_stuck(fail_on_stuck: bool, data: StatusReport) -> None:
    if fail_on_stuck and data["stuckTotal"]:
        raise typer.Exit(exits.STUCK_FOUND)


@app.command()
def show(
    ctx: typer.Context,
    order_id: Annotated[
        str, typer.Argument(help="VTEX order id (ABC-12345), marketplace order id, or invoice number.")
    ],
    vtex: Annotated[
        bool, typer.Option("--vtex", help="Also fetch VTEX's current view of the order.")
    ] = False,
    account: Annotated[
        str | None, typer.Option(help="Look in this configured account only (same as ACCOUNT/ORDER_ID).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the order and its history as JSON.")] = False,
) -> None:
    """One order: its fields, its full history, and (--vtex) VTEX's view beside ours."""
    from orchestrator.ops import render
    from orchestrator.ops.views import event_json, order_json

    settings = ctx.obj.logging_settings() if vtex else ctx.obj.settings()
    store = store_for(settings)
    if account is not None:
        settings.account(account)  # an unknown account is a usage error
        order_id = f"{account}/{order_id}"
    row = store.the_order(order_id)  # by any id; several matches listed, not guessed
    events = store.events(row.id)
    view = None
    if vtex:  # only then: the VTEX client's imports cost a quarter of a second
        from orchestrator.engine.clients import build_client
        from orchestrator.ops.check import vtex_view

        its_account = settings.account(row.account)

        async def ask_vtex() -> Any:
            async with build_client(settings, its_account) as client:
                return await vtex_view(client, its_account, store, row.order_id)

        view = asyncio.run(ask_vtex())
    if as_json:
        data: dict[str, Any] = {"order": order_json(row), "events": [event_json(e) for e in events]}
        if view is not None:
            data["vtex"] = view.order
            data["vtexError"] = view.error
        typer.echo(json.dumps(data, indent=2, default=str))
        return
    out.print(render.order_panel(row, events, utcnow()))
    if view is not None:
        out.print(render.vtex_comparison(row, view.order, view.error))


@app.command()
def migrate(ctx: typer.Context, as_json: Annotated[bool, json_option()] = False) -> None:
    """Create or upgrade the database schema (other commands also do this on start)."""
    from orchestrator.store.dialects import create_db_engine
    from orchestrator.store.migrate import current_revision, upgrade

    settings = ctx.obj.settings()
    engine, _hooks = create_db_engine(settings.database_url, create=True)
    before = current_revision(engine)
    upgrade(engine)
    after = current_revision(engine)
    if as_json:
        typer.echo(json.dumps({"revision": after, "previous": before, "changed": before != after}, indent=2))
        return
    out.print(
        f"schema at revision {after}"
        + (f" (was {before or 'empty'})" if before != after else " (up to date)")
    )
