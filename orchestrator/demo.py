"""`orchestrator demo`: the whole product on the embedded defaults, with nothing to configure.

It starts the VTEX sandbox on a free loopback port with a short grace period, creates a fresh
SQLite database, imports the example orders shipped with the package (most carry their invoice;
some get it later, the way an ERP issues it once handling has started), runs the daemon until
every order is invoiced, and prints the final status and the sandbox's ledger.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table

from orchestrator import log
from orchestrator.clock import utcnow
from orchestrator.config.settings import Settings, load_settings
from orchestrator.engine.daemon import Daemon
from orchestrator.intake.importer import import_lines
from orchestrator.intake.line_input import split_lines
from orchestrator.ops import render
from orchestrator.ops.operations import attach_invoice
from orchestrator.ops.status import report
from orchestrator.runner import run_daemon
from orchestrator.sandbox import Sandbox, SandboxConfig, SandboxOms, ServerThread
from orchestrator.store.open import open_store
from orchestrator.store.store import Store
from states import State

EXAMPLES = Path(__file__).with_name("examples")
TIMEOUT_SECONDS = 120.0


def run_demo(console: Console, orders_file: Path | None = None, grace_seconds: float = 5.0) -> int:
    workdir = Path(tempfile.mkdtemp(prefix="orchestrator-demo-"))
    log_path = workdir / "daemon.log"
    sandbox = Sandbox(SandboxOms(SandboxConfig(grace_seconds=grace_seconds)))
    with (
        ServerThread(sandbox) as server,
        log_path.open("w", encoding="utf-8") as log_file,
        log.redirected(log_file),
    ):
        settings = load_settings(
            None,
            database_url=f"sqlite:///{workdir / 'demo.db'}",
            vtex_base_url=server.url,
            vtex_app_key=sandbox.oms.config.app_key,
            vtex_app_token=sandbox.oms.config.app_token,
            grace_period=timedelta(seconds=grace_seconds),
            tick_interval=timedelta(milliseconds=250),
            concurrency=32,
        )
        console.print(f"[bold]VTEX sandbox[/] {server.url}  (grace period {grace_seconds:g}s)")
        console.print(f"[bold]database[/]     {workdir / 'demo.db'}")
        console.print(f"[bold]daemon log[/]   {log_path}")
        store = open_store(settings.database_url)
        lines = split_lines((orders_file or EXAMPLES / "orders.jsonl").read_text(encoding="utf-8"))
        imported = import_lines(lines, store, utcnow(), worker="demo")
        if not imported.ok:
            for problem in imported.problems:
                console.print(str(problem), markup=False)
            return 1
        late = _late_invoices(None if orders_file else EXAMPLES / "late-invoices.jsonl")
        console.print(
            f"imported {len(imported.imported)} orders; {len(late)} of them get their invoice later, "
            "once handling has started"
        )
        started = time.monotonic()
        finished = asyncio.run(_drive(settings, store, late, console))
        elapsed = time.monotonic() - started

    data = report(store, utcnow(), settings.stuck_rules, settings.grace_period)
    console.print(render.counts_table(data))
    if data["stuck"]:
        for line in render.stuck_blocks(data, utcnow(), console.width):
            console.print(line, soft_wrap=True)
    ledger = sandbox.oms.ledger.summary()
    per_order = ledger["requests"] / max(1, len(imported.imported))
    console.print(
        f"VTEX requests: {ledger['requests']} ({per_order:.1f} per order) "
        f"{json.dumps(ledger['requestsByOperation'])}"
    )
    console.print(
        f"duplicates in VTEX: places {ledger['ordersWithDuplicatePlace']}, "
        f"start-handlings {ledger['ordersWithDuplicateStartHandling']}, "
        f"invoice numbers {ledger['ordersWithSeveralInvoiceNumbers']}"
    )
    if not finished:
        console.print(f"[bold red]demo did not finish within {TIMEOUT_SECONDS:.0f}s[/]")
        return 1
    console.print(f"[bold green]all {len(imported.imported)} orders invoiced in {elapsed:.1f}s[/]")
    return 0


def _late_invoices(path: Path | None) -> dict[str, dict[str, Any]]:
    if path is None:
        return {}
    entries = [json.loads(line) for line in split_lines(path.read_text(encoding="utf-8")) if line.strip()]
    return {entry["orderId"]: entry["invoice"] for entry in entries}


async def _drive(settings: Settings, store: Store, late: dict[str, dict[str, Any]], console: Console) -> bool:
    holder: dict[str, Daemon] = {}
    daemon_task = asyncio.create_task(
        run_daemon(settings, store, install_signals=False, on_ready=lambda d: holder.setdefault("daemon", d))
    )
    pending = dict(late)
    deadline = time.monotonic() + TIMEOUT_SECONDS
    done = False
    try:
        with Live(console=console, refresh_per_second=8, transient=False) as live:
            while time.monotonic() < deadline and not daemon_task.done():
                counts = {c.state: c.count for c in await asyncio.to_thread(store.state_counts)}
                live.update(_progress(counts))
                await _attach_due_invoices(store, pending)
                total = sum(counts.values())
                settled = sum(counts.get(str(s), 0) for s in (State.INVOICED, State.FAILED, State.CANCELED))
                if total and settled == total:
                    done = counts.get(str(State.INVOICED), 0) == total
                    break
                await asyncio.sleep(0.25)
        console.print()
    finally:
        if "daemon" in holder:
            holder["daemon"].request_stop("demo finished")
        await daemon_task
    return done


async def _attach_due_invoices(store: Store, pending: dict[str, dict[str, Any]]) -> None:
    """The ERP issues these invoices once handling has started."""
    for order_id in list(pending):
        row = await asyncio.to_thread(store.find, order_id)
        if row is not None and row.state == State.HANDLING:
            await asyncio.to_thread(attach_invoice, store, order_id, pending.pop(order_id))


def _progress(counts: dict[str, int]) -> Group:
    total = sum(counts.values()) or 1
    invoiced = counts.get(str(State.INVOICED), 0)
    table = Table.grid(padding=(0, 2))
    for state in (s for s in State if counts.get(str(s))):
        table.add_row(str(state), str(counts[str(state)]))
    return Group(
        ProgressBar(total=total, completed=invoiced, width=50), f"{invoiced}/{total} invoiced", table
    )
