"""Rich renderings of the status report and of one order's history, for the terminal."""

from __future__ import annotations

import re
import textwrap
from datetime import datetime
from typing import Any

from rich.console import Group
from rich.table import Table
from rich.text import Text

from orchestrator.config.account_tables import DEFAULT_ACCOUNT
from orchestrator.durations import format_duration
from orchestrator.ops import invoicing
from orchestrator.ops.alerts import alerts
from orchestrator.ops.status import StatusReport
from orchestrator.ops.views import event_text
from orchestrator.store.events import StoredEvent
from orchestrator.store.rows import OrderRow, ref_of
from orchestrator.timefmt import human

STATE_STYLES = {
    "invoiced": "green",
    "failed": "bold red",
    "canceled": "dim",
    "handling": "cyan",
    "ready-for-handling": "cyan",
    "dispatch-authorized": "yellow",
}


def counts_table(report: StatusReport) -> Table:
    """Orders per state; with several accounts, a column for each account beside the total."""
    by_account: dict[str, dict[str, int]] = report.get("countsByAccount", {})
    table = Table(title="Orders by state", title_justify="left")
    table.add_column("state")
    for account in by_account:
        table.add_column(account, justify="right")
    table.add_column("orders" if not by_account else "all", justify="right")
    table.add_column("oldest in state", justify="right")
    for state, count in report["counts"].items():
        oldest = report["oldest"].get(state)
        age = format_duration(oldest["ageSeconds"]) if oldest and count else "-"
        per_account = [str(counts.get(state, 0)) for counts in by_account.values()]
        table.add_row(Text(state, style=STATE_STYLES.get(state, "")), *per_account, str(count), age)
    totals = [str(sum(counts.values())) for counts in by_account.values()]
    table.add_row(Text("total", style="bold"), *totals, str(sum(report["counts"].values())), "")
    blanks = [""] * len(by_account)
    for label, key in (("partly invoiced", "partlyInvoiced"), ("with returns", "returned")):
        if report.get(key):
            table.add_row(Text(label, style="dim"), *blanks, str(report.get(key)), "")
    return table


def account_lines(report: StatusReport, now: datetime) -> list[Text]:
    """What holds the whole account (pauses, 429s) and who runs (the daemons): first, in colour."""
    return [Text(alert.text, style=ALERT_STYLES[alert.kind]) for alert in alerts(report, now)]


ALERT_STYLES = {"ok": "green", "warn": "bold yellow", "alert": "bold red"}


def stuck_table(report: StatusReport, now: datetime) -> Table:
    """The stuck orders for a script (output piped): one line per order, never wrapped (the
    output contract); a person at a terminal gets `stuck_blocks`."""
    shown, total = len(report["stuck"]), report["stuckTotal"]
    title = f"Stuck orders: {total}" + (f" (oldest {shown} shown)" if total > shown else "")
    table = Table(title=title, title_justify="left")
    table.add_column("order", no_wrap=True)
    table.add_column("state", no_wrap=True)
    for column in ("in state", "VTEX status", "attempts", "next try", "why", "what to do"):
        table.add_column(column, overflow="fold")
    for entry in report["stuck"]:
        nxt = entry["nextTryAt"]
        table.add_row(
            ref_of(entry.get("account", DEFAULT_ACCOUNT), entry["orderId"]),
            Text(entry["state"], style=STATE_STYLES.get(entry["state"], "")),
            format_duration(entry["secondsInState"]),
            entry["vtexStatus"] or "-",
            str(entry["attempts"]),
            f"in {format_duration(datetime.fromisoformat(nxt) - now)}" if nxt else "-",
            entry["reason"],
            entry["suggestion"],
        )
    return table


# A command inside advice (`orchestrator retry ABC-1`): shown on a line of its own, never split.
_COMMAND = re.compile(r"`(orchestrator [^`]+)`")


def stuck_blocks(report: StatusReport, now: datetime, width: int = 80) -> list[Text]:
    """The stuck orders as one block each, for a terminal of `width` columns: a head line, why
    and what to do as prose wrapped at word boundaries, and each command on a line of its own
    (copied whole, however long). Ages are computed here, at display time."""
    shown, total = len(report["stuck"]), report["stuckTotal"]
    lines = [Text(f"Stuck orders: {total}" + (f" (oldest {shown} shown)" if total > shown else ""), "bold")]
    for entry in report["stuck"]:
        nxt = entry["nextTryAt"]
        facts = [f"{format_duration(entry['secondsInState'])} in state"]
        if entry["vtexStatus"]:
            facts.append(f"VTEX: {entry['vtexStatus']}")
        facts.append(f"{entry['attempts']} attempt(s)")
        if nxt:
            facts.append(f"next try in {format_duration(datetime.fromisoformat(nxt) - now)}")
        head = Text()
        head.append(ref_of(entry.get("account", DEFAULT_ACCOUNT), entry["orderId"]), "bold")
        head.append("  ")
        head.append(entry["state"], STATE_STYLES.get(entry["state"], ""))
        lines.append(Text(""))
        lines.append(head)
        lines += [Text(line) for line in _wrapped(", ".join(facts), "  ", width)]
        commands: list[str] = []
        for label, said in (("why", entry["reason"]), ("do", entry["suggestion"])):
            commands += _COMMAND.findall(said)
            prose = _COMMAND.sub("the command below", said).replace("`", "")
            lines += [Text(line) for line in _wrapped(prose, f"  {label}: ", width)]
        lines += [Text(f"    {command}", "cyan") for command in commands]
    return lines


def _wrapped(text: str, first: str, width: int) -> list[str]:
    return textwrap.wrap(
        text,
        width=max(width, 40),
        initial_indent=first,
        subsequent_indent=" " * len(first),
        break_long_words=False,
        break_on_hyphens=False,
    )


def order_panel(row: OrderRow, events: list[StoredEvent], now: datetime) -> Group:
    facts = Table.grid(padding=(0, 2))
    facts.add_column(style="bold")
    facts.add_column()
    rows: list[tuple[str, Any]] = [
        ("order", row.order_id),
        *([("account", row.account)] if row.account != DEFAULT_ACCOUNT else []),
        ("affiliate / marketplace id", f"{row.affiliate_id} / {row.marketplace_order_id}"),
        ("state", Text(row.state, style=STATE_STYLES.get(row.state, ""))),
        (
            "in state since",
            f"{human(row.state_changed_at)} ({format_duration(now - row.state_changed_at)} ago)",
        ),
        ("value", f"{row.value} cents"),
        ("invoices", invoicing.summary(row)),
        *[("", invoicing.entry_line(e)) for e in invoicing.entries_view(row)],
        (
            "last VTEX status",
            f"{row.vtex_status} at {row.vtex_status_at:%H:%M:%S}Z" if row.vtex_status_at else "-",
        ),
        ("attempts", str(row.attempts)),
        ("last error", row.last_error or "-"),
        ("open intent", f"{row.intent} (attempt {row.intent_attempt})" if row.intent else "-"),
        ("next try", human(row.next_run_at)),
        ("waiting for", row.wait_reason or "-"),
        (
            "lease",
            f"{row.lease_owner} until {human(row.lease_expires_at)}" if row.lease_owner else "-",
        ),
    ]
    for key, value in rows:
        facts.add_row(key, value)
    history = Table(title="History", title_justify="left")
    for column in ("time (UTC)", "event", "step", "from → to", "attempt", "HTTP", "ms", "detail"):
        history.add_column(column, overflow="fold")
    for e in events:
        moved = f"{e['from_state']} → {e['to_state']}" if e["from_state"] else (e["to_state"] or "")
        detail = event_text(e)
        history.add_row(
            human(e["at"]),
            e["kind"],
            e["action"] or "",
            moved,
            str(e["attempt"] or ""),
            str(e["http_status"] or ""),
            f"{e['duration_ms']:.0f}" if e["duration_ms"] is not None else "",
            detail,
        )
    return Group(facts, history)


def vtex_comparison(row: OrderRow, vtex: dict[str, Any] | None, error: str | None) -> Table:
    """Our view of the order beside VTEX's, line by line."""
    table = Table(title="Here and in VTEX", title_justify="left")
    table.add_column("")
    table.add_column("here")
    table.add_column("VTEX")
    if vtex is None:
        table.add_row("order", row.order_id, Text(error or "not found", style="bold red"))
        return table
    packages = (vtex.get("packageAttachment") or {}).get("packages") or []
    invoices = (
        ", ".join(f"{p.get('invoiceNumber')} ({p.get('type')}, {p.get('invoiceValue')})" for p in packages)
        or "none"
    )
    tracking = ", ".join(str(p.get("trackingNumber")) for p in packages if p.get("trackingNumber")) or "none"
    table.add_row("state / status", row.state, str(vtex.get("status")))
    table.add_row("value (cents)", str(row.target_value), str(vtex.get("value")))
    ours = ", ".join(f"{e['number']} ({e['type']}, {e['value']})" for e in row.invoices or ()) or "none"
    table.add_row("invoices", ours, invoices)
    table.add_row("tracking", row.tracking_number or "none", tracking)
    table.add_row(
        "authorized",
        human(row.authorized_at),
        str(vtex.get("authorizedDate") or "-"),
    )
    table.add_row("last change", human(row.updated_at), str(vtex.get("lastChange") or "-"))
    return table


def orders_table(rows: list[OrderRow], now: datetime) -> Table:
    """A listing: one line per order, what it is and what holds it."""
    table = Table()
    table.add_column("order", no_wrap=True)
    table.add_column("marketplace id", no_wrap=True)
    table.add_column("state", no_wrap=True)
    table.add_column("in state", justify="right", no_wrap=True)
    table.add_column("invoice", no_wrap=True)
    table.add_column("attempts", justify="right")
    table.add_column("why", overflow="fold")
    for row in rows:
        why = row.needs_attention or row.wait_reason or ""
        if row.last_error and row.state == "failed":
            why = f"{row.last_error_code or ''} {row.last_error}".strip()
        table.add_row(
            row.ref,  # `acme-br/ABC-1` outside the default account
            row.marketplace_order_id,
            Text(row.state, style=STATE_STYLES.get(row.state, "")),
            format_duration(now - row.state_changed_at),
            row.invoice_number or "-",
            str(row.attempts),
            why,
        )
    return table
