"""Commands about the set-up: config, check, the VTEX sandbox and the demo."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from orchestrator.cli import exits
from orchestrator.cli.app import app
from orchestrator.cli.support import Report, err_line, json_option, out, store_for


@app.command()
def config(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print the settings as JSON.")] = False,
    first: Annotated[
        bool, typer.Option("--first", help="Only the few settings to set before anything else.")
    ] = False,
) -> None:
    """The effective settings and where each comes from; secrets are masked."""
    from orchestrator.config.settings import describe, first_settings

    rows = describe(ctx.obj.settings(), ctx.obj.config)
    if first:
        chosen = first_settings(rows)
        if as_json:
            keys = ("variable", "value", "source", "set", "required", "why")
            typer.echo(json.dumps({r["setting"]: {k: r[k] for k in keys} for r in chosen}, indent=2))
            return
        table = Table(title="Set these first", title_justify="left")
        for column in ("", "environment variable", "value", "from", "what it is"):
            table.add_column(column)
        for entry in chosen:
            if entry["set"]:
                mark = Text("set", style="green")
            else:
                mark = (
                    Text("SET ME", style="bold red") if entry["required"] else Text("check", style="yellow")
                )
            table.add_row(mark, entry["variable"], str(entry["value"]), entry["source"], entry["why"])
        out.print(table)
        if any(e["required"] and not e["set"] for e in chosen):
            raise typer.Exit(exits.USAGE)  # a script can gate a deployment on it
        return
    if as_json:
        typer.echo(
            json.dumps({r["setting"]: {"value": r["value"], "source": r["source"]} for r in rows}, indent=2)
        )
        return
    table = Table(title="Effective settings", title_justify="left")
    for column in ("environment variable", "value", "from"):
        table.add_column(column)
    for entry in rows:
        table.add_row(entry["variable"], str(entry["value"]), entry["source"])
    out.print(table)


@app.command()
def check(ctx: typer.Context, as_json: Annotated[bool, json_option()] = False) -> None:
    """Verify the database and the VTEX credentials (one harmless Get order), with a clear verdict."""
    from rich.text import Text

    from orchestrator.ops.check import check_setup
    from orchestrator.redaction import redact

    settings = ctx.obj.logging_settings()
    results = asyncio.run(check_setup(settings))
    if results[0][1]:  # the database works: lift the pause of each account VTEX accepts again
        from orchestrator.ops.check import vtex_label
        from orchestrator.ops.pause import how_daemons_resume, lift

        accounts = settings.all_accounts
        verdicts = {name: ok for name, ok, _message in results}
        for name, account in accounts.items():
            if not verdicts.get(vtex_label(name, len(accounts))):
                continue
            lifted = lift(account, store_for(settings))
            if lifted is not None:
                what = "the account pause" if len(accounts) == 1 else f"the pause of account {name}"
                resumes = how_daemons_resume(account.credentials)
                results.append(("pause", True, f"lifted {what} ({lifted.reason}); {resumes}"))
    failed = False
    report = Report(as_json)
    for name, ok, message in results:
        failed |= not ok
        if as_json:
            report.line(redact(message), check=name, ok=ok)
            continue
        mark = ("ok", "green") if ok else ("FAILED", "bold red")
        out.print(Text.assemble(mark, f"  {name}: ", redact(message)), soft_wrap=True)
    report.done(ok=not failed)
    raise typer.Exit(exits.FAILED if failed else exits.OK)


@app.command()
def resume(
    ctx: typer.Context,
    force: Annotated[bool, typer.Option("--force", help="Lift the pause without asking VTEX first.")] = False,
    account: Annotated[
        str | None, typer.Option("--account", help="Only this configured account (default: every one).")
    ] = None,
    as_json: Annotated[bool, json_option()] = False,
) -> None:
    """Lift the account pause once VTEX accepts the credentials again (checked with one harmless read)."""
    from orchestrator.clock import utcnow
    from orchestrator.ops.pause import how_daemons_resume, is_operator_pause, lift, probe_credentials

    settings = ctx.obj.logging_settings()
    store = store_for(settings)
    if account:
        settings.account(account)  # an unknown name is refused, naming the configured ones
    chosen = {name: a for name, a in settings.all_accounts.items() if account is None or name == account}
    report = Report(as_json)
    outcomes: list[dict[str, Any]] = []
    refused = False
    for name, configured in chosen.items():
        key = configured.key
        held = store.account_pause(key)
        by_operator = held is not None and is_operator_pause(held)
        if not force and not by_operator:  # an operator's pause was never about the credentials
            probe = asyncio.run(probe_credentials(settings, configured))
            if not probe.accepted:
                message = probe.said(again=True)
                refused = True
                outcomes.append({"account": key, "name": name, "lifted": False, "reason": message})
                if not as_json:
                    err_line(f"{message}; the pause stays", "not resumed")
                continue
        lifted = lift(configured, store, operator=True)
        waited = [p.resource for p in store.permission_pauses(key)]
        if waited:
            # The operator granted them: the calls that waited go now (a 403 pauses them again).
            store.clear_permission_pauses(key)
            store.wake_paused(configured.name, utcnow())
            report.note(f"account {name}: calls needing {', '.join(map(repr, waited))} go again")
        if lifted is None and not waited:
            report.note(f"account {name} was not paused")
        elif lifted is not None:
            report.note(
                f"account {name}: pause lifted ({lifted.reason}); "
                + how_daemons_resume(configured.credentials)
            )
        outcomes.append(
            {
                "account": key,
                "name": name,
                "lifted": lifted is not None,
                "reason": lifted.reason if lifted else None,
            }
        )
    if len(outcomes) == 1:
        single = {k: v for k, v in outcomes[0].items() if k != "name"}
        if refused:
            if as_json:
                Report(True).done(**single)
            raise typer.Exit(exits.PAUSED)
        report.done(**single)
        return
    report.done(accounts=outcomes)
    if refused:
        raise typer.Exit(exits.PAUSED)


@app.command()
def pause(
    ctx: typer.Context,
    account: Annotated[str, typer.Option("--account", help="The configured account to pause.")],
    reason: Annotated[str, typer.Option("--reason", help="Why, for the others (status, the console).")] = "",
    as_json: Annotated[bool, json_option()] = False,
) -> None:
    """Pause all work of one account, in every daemon, until `orchestrator resume --account NAME`
    (a step in flight ends as it would; nothing new is sent to VTEX)."""
    import getpass

    from orchestrator.ops.pause import active_pause, is_operator_pause, pause_account

    settings = ctx.obj.logging_settings()
    configured = settings.account(account)  # an unknown name is refused, naming the configured ones
    store = store_for(settings)
    report = Report(as_json)
    held = active_pause(configured, store)
    if held is not None and is_operator_pause(held):
        report.done(account=account, paused=False, reason=held.reason)
        err_line(f"account {account} is already paused ({held.reason})", "nothing to do")
        raise typer.Exit(exits.NOTHING_TO_DO)
    made = pause_account(configured, store, f"cli:{getpass.getuser()}", reason)
    report.note(
        f"account {account} paused ({made.reason}); running daemons stop sending within seconds; "
        f"`orchestrator resume --account {account}` lifts it"
    )
    report.done(account=account, paused=True, reason=made.reason)


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
    lenient: Annotated[
        bool, typer.Option(help="Benchmarks only: skip Place's body, catalog and payment checks.")
    ] = False,
    account: Annotated[
        list[str] | None,
        typer.Option(
            "--account",
            help="Also serve this VTEX account, under /accounts/NAME with its own orders, credentials "
            "and faults (repeat for more).",
        ),
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed for fault injection.")] = 0,
    latency_ms: Annotated[float, typer.Option(help="Added latency per request.")] = 0.0,
    jitter_ms: Annotated[float, typer.Option(help="Random extra latency, up to this much.")] = 0.0,
    error_before: Annotated[float, typer.Option(help="Chance of a 503 before applying.")] = 0.0,
    error_after: Annotated[float, typer.Option(help="Chance of a 500 after applying.")] = 0.0,
    drop_after: Annotated[float, typer.Option(help="Chance of closing the connection after applying.")] = 0.0,
    slow: Annotated[float, typer.Option(help="Chance of a response slower than any client timeout.")] = 0.0,
    slow_seconds: Annotated[float, typer.Option(help="How slow a slow response is.")] = 120.0,
    drip: Annotated[
        float, typer.Option(help="Chance of an answer sent one byte at a time (applied first).")
    ] = 0.0,
    drip_seconds: Annotated[float, typer.Option(help="Seconds between the bytes of a dripped answer.")] = 0.5,
    rate_limit: Annotated[float, typer.Option(help="Chance of a 429 with Retry-After.")] = 0.0,
    retry_after: Annotated[float, typer.Option(help="Retry-After of injected 429s, in seconds.")] = 2.0,
    html: Annotated[float, typer.Option(help="Chance of a 200 HTML page instead of VTEX.")] = 0.0,
    empty: Annotated[float, typer.Option(help="Chance of a 200 with an empty body.")] = 0.0,
    wrong_json: Annotated[float, typer.Option(help="Chance of a 200 with JSON VTEX never sends.")] = 0.0,
    redirect: Annotated[float, typer.Option(help="Chance of a 302 to another host.")] = 0.0,
    endless: Annotated[float, typer.Option(help="Chance of a 200 whose body never ends.")] = 0.0,
    place_answer: Annotated[
        str, typer.Option(help="Place's answer: array (2023 spec, every example) or object (2024+ spec).")
    ] = "array",
    authorize_status: Annotated[int, typer.Option(help="Authorize dispatch answers 200, 201 or 204.")] = 200,
    cancel_mode: Annotated[
        str, typer.Option(help="After the grace period a cancellation is: accept, deny or stick.")
    ] = "accept",
    cancel_delay: Annotated[float, typer.Option(help="Seconds before a cancellation is decided.")] = 0.0,
    refuse_tracking: Annotated[
        int | None, typer.Option(help="Answer every tracking update with this HTTP status.")
    ] = None,
    fulfill_unknown: Annotated[
        float, typer.Option(help="Seconds after Place during which Authorize dispatch answers 404.")
    ] = 0.0,
    manual_authorization: Annotated[
        bool,
        typer.Option(help="New orders wait for the seller's approval (POST /_sandbox/orders/{id}/approve)."),
    ] = False,
    refuse_invoices: Annotated[
        int, typer.Option(help="Refuse the next N invoice notifications with ORD039.")
    ] = 0,
    null_status_reads: Annotated[
        int, typer.Option(help="The first N Get orders of each order show status null (incomplete).")
    ] = 0,
    forbid: Annotated[
        list[str] | None,
        typer.Option(
            help="Answer 403 to this call (e.g. send-invoice: the key lacks Notify invoice); repeat."
        ),
    ] = None,
    feed_shuffle: Annotated[bool, typer.Option(help="The Orders Feed hands items out in any order.")] = False,
    feed_duplicate: Annotated[
        float, typer.Option(help="Chance that the Orders Feed hands an item out twice.")
    ] = 0.0,
    hook_lose: Annotated[
        float, typer.Option(help="Chance that a Hook notification fails (VTEX tries it again later).")
    ] = 0.0,
    price_divergence: Annotated[
        int,
        typer.Option(
            help="Cents VTEX's price of each new order differs by from the marketplace's (its invoices "
            "must reach VTEX's value)."
        ),
    ] = 0,
) -> None:
    """Serve the VTEX sandbox over HTTP (a faithful, stateful simulator of VTEX OMS)."""
    from dataclasses import replace

    from orchestrator.config.account_tables import ACCOUNT_NAME
    from orchestrator.sandbox import Catalog, FaultConfig, Faults, Sandbox, SandboxConfig, SandboxOms
    from orchestrator.sandbox.feed import FeedFaults
    from orchestrator.sandbox.hook import HookFaults
    from orchestrator.sandbox.server import serve_forever

    config = SandboxConfig(
        grace_seconds=grace_seconds,
        invoice_delay_seconds=invoice_delay,
        seller_payment_affiliates=frozenset(seller_payment_affiliate or ()),
        rate_limit_rpm=rpm_limit,
        lenient=lenient,
        place_answer=place_answer,
        authorize_status=authorize_status,
        cancel_mode=cancel_mode,
        cancel_delay_seconds=cancel_delay,
        tracking_refusal=refuse_tracking,
        fulfill_unknown_seconds=fulfill_unknown,
        manual_authorization=manual_authorization,
        invoice_refusals=refuse_invoices,
        null_status_reads=null_status_reads,
        forbidden=tuple(forbid or ()),
        price_divergence=price_divergence,
    )
    if place_answer not in ("array", "object") or authorize_status not in (200, 201, 204):
        raise typer.BadParameter("--place-answer is array or object; --authorize-status is 200, 201 or 204")
    if cancel_mode not in ("accept", "deny", "stick"):
        raise typer.BadParameter("--cancel-mode is accept, deny or stick")
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
        drip=drip,
        drip_seconds=drip_seconds,
        rate_limit=rate_limit,
        retry_after_seconds=retry_after,
        html=html,
        empty=empty,
        wrong_json=wrong_json,
        redirect=redirect,
        endless=endless,
    )
    oms = SandboxOms(config, Catalog.from_file(catalog) if catalog else None)
    oms.feed.set_faults(FeedFaults(shuffle=feed_shuffle, duplicate=feed_duplicate, seed=seed))
    oms.hook.faults = HookFaults(lose=hook_lose)
    served = Sandbox(oms, Faults(faults))
    for name in account or ():
        if not ACCOUNT_NAME.fullmatch(name):
            raise typer.BadParameter(f"--account {name!r}: 1 to 40 lowercase letters, digits, '-' or '_'")
        own = replace(
            config, account=name, app_key=f"vtexappkey-{name}-SANDBOX", app_token=f"{name}-sandbox-token"
        )
        served.add_account(name, Sandbox(SandboxOms(own, oms.catalog), Faults(replace(faults))))

    def ready(url: str) -> None:
        typer.echo(f"VTEX sandbox listening on {url} (grace period {grace_seconds:g}s)")
        # The documented default credentials are public; ones given on the command line are not echoed.
        token = config.app_token if app_token is None else "<the --app-token you gave>"
        typer.echo(f"VTEX_BASE_URL={url} VTEX_APP_KEY={config.app_key} VTEX_APP_TOKEN={token}")
        for name, other in served.accounts.items():
            own = other.oms.config
            typer.echo(
                f"account {name}: base_url={url}/accounts/{name} app key={own.app_key} token={own.app_token}"
            )

    serve_forever(served, host, port, on_ready=ready)


@app.command()
def demo(
    orders: Annotated[
        Path | None, typer.Option(help="JSON Lines orders to use instead of the shipped examples.")
    ] = None,
    grace_seconds: Annotated[float, typer.Option(help="Grace period of the demo's sandbox.")] = 5.0,
) -> None:
    """Zero-configuration run: sandbox, fresh SQLite, example orders, daemon, final status."""
    from orchestrator.demo import run_demo

    raise typer.Exit(run_demo(out, orders_file=orders, grace_seconds=grace_seconds))
