"""Why a stuck order is stuck, in plain words, and the command that usually helps.

Which orders are stuck is `orchestrator.config.stuck_rules` (and the store's stuck query).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from orchestrator.config.account_tables import DEFAULT_ACCOUNT
from orchestrator.config.stuck_rules import StuckRules
from orchestrator.durations import format_duration
from orchestrator.engine.planner import held_by_vtex, last_sent
from orchestrator.ops import invoicing
from orchestrator.store.rows import OrderRow
from states import Attention, State, Waiting, invoices


@dataclass(frozen=True)
class Diagnosis:
    reason: str
    suggestion: str
    # The one action that fixes it, for the console to offer (`FIXES`); None when the fix is
    # outside this tool (VTEX Admin, a configuration) or time. Retry is named only where it can
    # succeed: an order VTEX refused for its own data fails the same way again, so it gets
    # `repair` instead.
    fix: str | None = None


FIXES = ("retry", "repair", "cancel", "invoice", "resume")


_DATA_CODES = ("FMT", "ORD", "CHK")
# Place refusals whose cause is in VTEX's account (catalog, stock, logistics), not in our line.
_ACCOUNT_CODES = {
    "FMT005": "the SKU is not available (stock, or not in the catalog)",
    "FMT010": "the selected SLA is not available for that address",
    "FMT002": "VTEX could not reserve the items",
    "FMT017": "the account has no reservation TTL configured",
}
# Place refusals of an order id VTEX will never take again.
_ID_CODES = ("FMT0060",)


def _refused(row: OrderRow, where: str, error: str, code: str) -> Diagnosis:
    """A refusal by VTEX, and where its cause lies. A Place refusal means VTEX never accepted the
    order: if the cause is our data (most FMT codes: values, items, indexes, addresses), the line is
    corrected and imported with --replace; if it is the account's setup, it is fixed in VTEX and the
    order retried. A refusal of a later step (an order VTEX has) is fixed in VTEX, then retried."""
    oid = row.ref  # what commands take: `acme-br/ABC-1` outside the default account
    give_up = f"or give up with `orchestrator cancel {oid}`"
    if row.failed_from != "imported":
        return Diagnosis(
            f"{where}: VTEX refused the step ({error})",
            f"fix the cause in VTEX (the order as VTEX has it: `orchestrator show {oid} --vtex`), then "
            f"`orchestrator retry {oid}`; {give_up}",
            "retry",
        )
    if code in _ID_CODES:
        return Diagnosis(
            f"{where}: VTEX refused the order ({error})",
            "VTEX will not take this order id again: import the order under a new marketplace order id, "
            f"and `orchestrator cancel {oid}` this one",
            "cancel",
        )
    if code in _ACCOUNT_CODES:
        return Diagnosis(
            f"{where}: VTEX refused the order: {_ACCOUNT_CODES[code]} ({error})",
            f"fix it in VTEX (catalog, stock, shipping) then `orchestrator retry {oid}`, or correct the "
            f"order's line and `orchestrator import <file> --replace`; {give_up}",
            "retry",
        )
    return Diagnosis(
        f"{where}: VTEX refused the order for its data ({error})",
        "correct the order's line in the import file and run `orchestrator import <file> --replace` (VTEX "
        f"never accepted it, so it is placed again); {give_up}",
        "repair",
    )


def diagnose(row: OrderRow, now: datetime, rules: StuckRules, grace_period: timedelta) -> Diagnosis:
    """A plain-words reason and the command that usually helps."""
    oid = row.ref  # what commands take: `acme-br/ABC-1` outside the default account
    age = format_duration(now - row.state_changed_at)
    if row.state == State.FAILED:
        where = f"failed at {row.failed_from or 'an unknown step'}"
        error = row.last_error or "no error recorded"
        code = row.last_error_code or ""
        if code.startswith(_DATA_CODES):
            return _refused(row, where, error, code)
        if row.cancel_reason:
            return Diagnosis(
                f"{where}: VTEX refused to cancel it ({error})",
                f"`orchestrator retry {oid}` continues the order",
                "retry",
            )
        return Diagnosis(f"{where}: {error}", f"once the cause is gone: `orchestrator retry {oid}`", "retry")
    if row.needs_attention == Attention.REQUEST_GUARD:
        return Diagnosis(
            row.wait_reason or "stopped by the request guard",
            f"`orchestrator show {oid}` lists every request; it goes on by itself when the hour is over, "
            "and a loop that repeats it is a bug worth reporting",
        )
    if row.needs_attention == Attention.VTEX_WORKFLOW_ERROR:
        return Diagnosis(
            row.last_error or "VTEX flags an error in the order's workflow",
            f"look at the order's workflow in VTEX Admin (Orders) and fix it there (`orchestrator show "
            f"{oid} --vtex`), then `orchestrator retry {oid}`; to give up: `orchestrator cancel {oid}`",
            "retry",
        )
    if row.needs_attention:
        return Diagnosis(
            f"{row.needs_attention}: {row.last_error or row.wait_reason or 'see the history'}",
            f"`orchestrator track {oid} --tracking-number <number>` with a corrected number, or "
            f"`orchestrator retry {oid}` to send it again",
            "retry",
        )
    if row.intent and row.intent_at and now - row.intent_at > rules.open_intent_after:
        return Diagnosis(
            f"cannot tell whether {row.intent} took effect for {format_duration(now - row.intent_at)}: "
            f"{row.last_error or row.wait_reason or 'VTEX has not answered'}",
            "check that VTEX is reachable (`orchestrator check`); the daemon keeps asking VTEX and never "
            f"re-sends blindly; see `orchestrator show {oid} --vtex`",
        )
    if row.wait_code == Waiting.CREDENTIALS:
        return Diagnosis(
            row.wait_reason or "the account is paused: VTEX rejected the credentials",
            "fix the account's app key or token (docs/day-two.md, Rotate credentials), then "
            "`orchestrator resume`",
            "resume",
        )
    if row.wait_code == Waiting.ENDPOINT:
        return Diagnosis(
            row.wait_reason or "the account is paused: its URL does not answer like VTEX",
            "point the account's base URL at VTEX's API host (`orchestrator check` says what answers)",
        )
    if row.wait_code == Waiting.PERMISSION:
        return Diagnosis(
            row.wait_reason or "the app key lacks a License Manager resource this order's next call needs",
            "add the resource to the app key's role in VTEX Admin (Account settings > Roles); the calls "
            "that need it go again by themselves (`orchestrator check` lists each resource)",
        )
    if row.wait_code in (Waiting.VTEX_HOLDS, Waiting.VTEX_NOT_YET):
        return Diagnosis(
            row.wait_reason or f"VTEX asked to wait (status {row.vtex_status})",
            f"it tries again by itself, less and less often; `orchestrator show {oid} --vtex`; to give "
            f"up on it: `orchestrator cancel {oid}`",
        )
    if held_by_vtex(row) is not None:
        return Diagnosis(
            row.wait_reason or f"VTEX holds the order in {row.vtex_status}",
            f"`orchestrator show {oid} --vtex`; to give up on it: `orchestrator cancel {oid}`",
        )
    if row.state == State.CANCELING:
        return Diagnosis(
            row.wait_reason or f"canceling for {age}",
            f"the seller decides it in VTEX Admin (or VTEX support, if it is stuck); see "
            f"`orchestrator show {oid} --vtex`",
        )
    if row.state == State.DISPATCH_AUTHORIZED:
        seen = row.vtex_status or "nothing yet"
        ours = format_duration(grace_period)
        setting = (
            "ORCHESTRATOR_GRACE_PERIOD"
            if row.account == DEFAULT_ACCOUNT
            else f"grace_period of accounts.{row.account} (the config file)"
        )
        return Diagnosis(
            f"authorized {age} ago and VTEX reports {seen} (our grace period: {ours})",
            f"make {setting} match the account's cancellation grace period (VTEX Admin > "
            f"Orders > Settings); see `orchestrator show {oid} --vtex`",
        )
    if row.state == State.HANDLING and not row.invoices:
        return Diagnosis(
            f"handling for {age}, waiting for invoice data",
            f"`orchestrator invoice {oid} --number <invoice number> --value {row.target_value}`",
            "invoice",
        )
    attached = invoices.total(row.invoices, invoices.OUTPUT)
    if row.state == State.HANDLING and attached < row.target_value and not row.invoice_waiting:
        return Diagnosis(
            f"handling for {age}; {invoicing.summary(row)}: VTEX marks it invoiced only when its Output "
            "invoices reach its value",
            f"`orchestrator invoice {oid} --number <invoice number> --value {row.target_value - attached}` "
            "for the rest",
            "invoice",
        )
    sent_at = last_sent(row)
    if row.state == State.HANDLING and sent_at is not None:
        seen = row.vtex_status or "no status"
        return Diagnosis(
            f"invoices {', '.join(row.sent_output_numbers)} sent {format_duration(now - sent_at)} ago but "
            f"VTEX still reports {seen}",
            f"`orchestrator show {oid} --vtex`: do the Output invoices add up to VTEX's value?",
        )
    if row.last_error:
        return Diagnosis(
            f"no progress for {age}; retrying (attempt {row.attempts + 1}) after: {row.last_error}",
            f"`orchestrator show {oid}` for every attempt; it retries on its own",
        )
    return Diagnosis(row.wait_reason or f"no progress for {age}", f"`orchestrator show {oid}`")
