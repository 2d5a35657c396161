"""The `orchestrator` command: thin wrappers over the library, one function per command."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from orchestrator.clock import utcnow
from orchestrator.database import DatabaseError
from orchestrator.durations import parse_duration
from orchestrator.operations import OperationError
from orchestrator.settings import ConfigurationError, Settings, load_settings

app = typer.Typer(
    help="Drive orders sold outside VTEX through VTEX OMS to `invoiced`, durably.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
out = Console(soft_wrap=False)
err = Console(stderr=True)


class Context:
    def __init__(self, config: Path | None) -> None:
        self.config = config

    def settings(self, **overrides: Any) -> Settings:
        return load_settings(self.config, **{k: v for k, v in overrides.items() if v is not None})


@app.callback()
def main_options(
    ctx: typer.Context,
    config: Annotated[
        Path | None,
        typer.Option("--config", "-c", help="TOML file of settings (environment variables take precedence)."),
    ] = None,
) -> None:
    ctx.obj = Context(config)


@contextmanager
def friendly_errors() -> Iterator[None]:
    """Expected failures become one clear line and a non-zero exit, not a traceback."""
    try:
        yield
    except (ConfigurationError, DatabaseError, OperationError) as exc:
        err.print(f"[bold red]error:[/] {exc}", highlight=False)
        raise typer.Exit(2) from None


def _repository(settings: Settings) -> Any:
    from orchestrator.wiring import open_repository

    return open_repository(settings)


@app.command("import")
def import_command(
    ctx: typer.Context,
    file: Annotated[str, typer.Argument(help="JSON Lines file of orders, or - for standard input.")],
) -> None:
    """Import orders: one JSON object per line, all or nothing."""
    from orchestrator.importer import import_lines

    with friendly_errors():
        settings = ctx.obj.settings()
        if file == "-":
            lines: list[str] = sys.stdin.read().splitlines()
        else:
            path = Path(file)
            if not path.is_file():
                raise ConfigurationError(f"no such file: {file}")
            lines = path.read_text(encoding="utf-8").splitlines()
        repository = _repository(settings)
        report = import_lines(lines, repository, utcnow(), settings.worker_id)
    if not report.ok:
        for problem in report.problems:
            err.print(str(problem), highlight=False, markup=False)
        err.print(
            f"[bold red]nothing imported:[/] {len(report.problems)} problem(s) in {report.lines} line(s)"
        )
        raise typer.Exit(1)
    for order_id in report.already_present:
        out.print(f"already imported, unchanged: {order_id}", highlight=False)
    out.print(
        f"imported {len(report.imported)} order(s)"
        + (f"; {len(report.already_present)} already present" if report.already_present else "")
    )


@app.command()
def run(
    ctx: typer.Context,
    until_done: Annotated[
        bool, typer.Option("--until-done", help="Exit once no order can progress without outside input.")
    ] = False,
    concurrency: Annotated[int | None, typer.Option(help="Orders stepped at the same time.")] = None,
) -> None:
    """Run the daemon: step due orders until SIGTERM/SIGINT (or until done)."""
    from orchestrator import log
    from orchestrator.wiring import run_daemon

    with friendly_errors():
        settings = ctx.obj.settings(concurrency=concurrency)
        log.configure(settings.log_level, settings.log_format)
        repository = _repository(settings)
        asyncio.run(run_daemon(settings, repository, until_done=until_done))


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
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the report as JSON (shape in the README).")
    ] = False,
) -> None:
    """Counts per state with the oldest order in each; with --stuck, the orders that need a look."""
    from orchestrator import render
    from orchestrator.status import report
    from orchestrator.stuck import StuckRules, StuckRulesError

    with friendly_errors():
        settings = ctx.obj.settings()
        try:
            rules = (
                StuckRules.parse(stuck_after, settings.grace_period) if stuck_after else settings.stuck_rules
            )
        except StuckRulesError as exc:
            raise ConfigurationError(str(exc).replace("ORCHESTRATOR_STUCK_AFTER", "--stuck-after")) from None
        now = utcnow()
        data = report(
            _repository(settings),
            now,
            rules,
            settings.grace_period,
            states=state,
            affiliate=affiliate,
            older_than=parse_duration(older_than) if older_than else None,
            limit=limit,
        )
    if as_json:
        typer.echo(json.dumps(data, indent=2))
        return
    for line in render.account_lines(data, now):
        out.print(line)
    if stuck:
        if data["stuck"]:
            out.print(render.stuck_table(data, now))
        else:
            out.print("No stuck orders.")
        return
    out.print(render.counts_table(data))
    if data["stuckTotal"]:
        out.print(
            f"{data['stuckTotal']} stuck order(s): `orchestrator status --stuck` says why and what to do."
        )
    else:
        out.print("No stuck orders.")


@app.command()
def show(
    ctx: typer.Context,
    order_id: Annotated[str, typer.Argument(help="VTEX order id, e.g. ABC-12345.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the order and its history as JSON.")] = False,
) -> None:
    """One order: its fields and its full history."""
    from orchestrator import render

    with friendly_errors():
        repository = _repository(ctx.obj.settings())
        row = repository.find(order_id)
        if row is None:
            raise OperationError(f"no order {order_id!r}")
        events = repository.events(row.id)
    if as_json:
        typer.echo(json.dumps({"order": row.as_dict(), "events": events}, indent=2, default=str))
        return
    out.print(render.order_panel(row, events, utcnow()))


@app.command()
def retry(
    ctx: typer.Context,
    order_ids: Annotated[
        list[str] | None, typer.Argument(help="Failed orders to put back in the flow.")
    ] = None,
    failed: Annotated[bool, typer.Option("--failed", help="Every failed order.")] = False,
) -> None:
    """Put failed orders back where they failed; each step is reconciled with VTEX before resending."""
    from orchestrator.operations import retry as retry_order

    with friendly_errors():
        repository = _repository(ctx.obj.settings())
        targets = list(order_ids or [])
        if failed:
            targets += repository.order_ids_in_state("failed")
        if not targets:
            raise OperationError("name the orders to retry, or use --failed")
        for order_id in targets:
            out.print(retry_order(repository, order_id).message, highlight=False)
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
    from orchestrator.operations import request_cancel
    from orchestrator.wiring import step_order_now

    with friendly_errors():
        settings = ctx.obj.settings()
        repository = _repository(settings)
        outcome = request_cancel(repository, order_id, reason)
        if not outcome.changed:
            out.print(outcome.message)
            return
        row = None
        for _ in range(3):  # an open intent is reconciled first, then the cancel is sent
            row = asyncio.run(step_order_now(settings, repository, order_id))
            if row is None or row.state in ("canceled", "failed") or not row.cancel_reason:
                break
    if row is None:
        out.print(f"cancel of {order_id} requested; the running daemon is working on it and will cancel it")
    elif row.state == "canceled":
        out.print(f"{order_id} canceled")
    elif row.state == "failed":
        err.print(f"[bold red]VTEX refused to cancel {order_id}:[/] {row.last_error}", highlight=False)
        raise typer.Exit(1)
    else:
        out.print(f"cancel of {order_id} requested: {row.wait_reason or 'the daemon will finish it'}")


@app.command()
def migrate(ctx: typer.Context) -> None:
    """Create or upgrade the database schema (other commands also do this on start)."""
    from orchestrator.database import create_db_engine
    from orchestrator.migrate import current_revision, upgrade

    with friendly_errors():
        settings = ctx.obj.settings()
        engine, _hooks = create_db_engine(settings.database_url)
        before = current_revision(engine)
        upgrade(engine)
        after = current_revision(engine)
    out.print(
        f"schema at revision {after}"
        + (f" (was {before or 'empty'})" if before != after else " (up to date)")
    )


@app.command()
def sandbox(
    port: Annotated[int, typer.Option(help="TCP port on 127.0.0.1 (0 picks a free one).")] = 8765,
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    grace_seconds: Annotated[float, typer.Option(help="VTEX's cancellation grace period.")] = 1800.0,
    app_key: Annotated[str | None, typer.Option(help="App key the sandbox accepts.")] = None,
    app_token: Annotated[str | None, typer.Option(help="App token the sandbox accepts.")] = None,
    catalog: Annotated[Path | None, typer.Option(help="JSON catalog replacing SKUs 1..1000.")] = None,
    seller_payment_affiliate: Annotated[
        list[str] | None,
        typer.Option(help="Affiliate configured with the seller's payment methods (Place answers 500)."),
    ] = None,
    invoice_delay: Annotated[
        float, typer.Option(help="Seconds an order stays in 'invoice' before 'invoiced'.")
    ] = 0.0,
    rpm_limit: Annotated[int | None, typer.Option(help="Requests per minute per app key before 429.")] = None,
    seed: Annotated[int, typer.Option(help="Seed for fault injection.")] = 0,
    latency_ms: Annotated[float, typer.Option(help="Added latency per request.")] = 0.0,
    jitter_ms: Annotated[float, typer.Option(help="Random extra latency, up to this much.")] = 0.0,
    error_before: Annotated[float, typer.Option(help="Chance of a 503 before applying.")] = 0.0,
    error_after: Annotated[float, typer.Option(help="Chance of a 500 after applying.")] = 0.0,
    drop_after: Annotated[float, typer.Option(help="Chance of closing the connection after applying.")] = 0.0,
    slow: Annotated[float, typer.Option(help="Chance of a response slower than any client timeout.")] = 0.0,
    slow_seconds: Annotated[float, typer.Option(help="How slow a slow response is.")] = 120.0,
    rate_limit: Annotated[float, typer.Option(help="Chance of a 429 with Retry-After.")] = 0.0,
    retry_after: Annotated[float, typer.Option(help="Retry-After of injected 429s, in seconds.")] = 2.0,
) -> None:
    """Serve the VTEX sandbox over HTTP (a faithful, stateful simulator of VTEX OMS)."""
    from orchestrator.sandbox import Catalog, FaultConfig, Faults, Sandbox, SandboxConfig, SandboxOms
    from orchestrator.sandbox.server import serve_forever

    config = SandboxConfig(
        grace_seconds=grace_seconds,
        invoice_delay_seconds=invoice_delay,
        seller_payment_affiliates=frozenset(seller_payment_affiliate or ()),
        rate_limit_rpm=rpm_limit,
    )
    if app_key:
        config.app_key = app_key
    if app_token:
        config.app_token = app_token
    faults = FaultConfig(
        seed=seed,
        latency_ms=latency_ms,
        jitter_ms=jitter_ms,
        error_before=error_before,
        error_after=error_after,
        drop_after=drop_after,
        slow=slow,
        slow_seconds=slow_seconds,
        rate_limit=rate_limit,
        retry_after_seconds=retry_after,
    )
    oms = SandboxOms(config, Catalog.from_file(catalog) if catalog else None)

    def ready(url: str) -> None:
        typer.echo(f"VTEX sandbox listening on {url} (grace period {grace_seconds:g}s)")
        # The documented default credentials are public; ones given on the command line are not echoed.
        token = config.app_token if app_token is None else "<the --app-token you gave>"
        typer.echo(f"VTEX_BASE_URL={url} VTEX_APP_KEY={config.app_key} VTEX_APP_TOKEN={token}")

    serve_forever(Sandbox(oms, Faults(faults)), host, port, on_ready=ready)


@app.command()
def demo(
    orders: Annotated[
        Path | None, typer.Option(help="JSON Lines orders to use instead of the shipped examples.")
    ] = None,
    grace_seconds: Annotated[float, typer.Option(help="Grace period of the demo's sandbox.")] = 5.0,
) -> None:
    """Zero-configuration run: sandbox, fresh SQLite, example orders, daemon, final status."""
    from orchestrator.demo import run_demo

    with friendly_errors():
        code = run_demo(out, orders_file=orders, grace_seconds=grace_seconds)
    raise typer.Exit(code)


def main() -> None:
    app()
