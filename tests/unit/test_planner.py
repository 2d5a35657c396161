"""The planner: what an order needs next, and when, from its row alone."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from orchestrator.engine.planner import Kind, plan
from orchestrator.engine.policy import Policies, PollPolicy
from orchestrator.store.rows import OrderRow
from states import SEND_INVOICE, Action, InvoiceTiming, State, invoices

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
GRACE = timedelta(minutes=30)
POLICIES = Policies.for_grace(GRACE, max_attempts=8)


ENTRY = invoices.entry(
    {"type": "Output", "invoiceNumber": "NF1", "invoiceValue": 1100, "items": []}, NOW.isoformat()
)


def row(**fields: object) -> OrderRow:
    base = OrderRow(
        id=1,
        order_id="ABC-1",
        affiliate_id="ABC",
        marketplace_order_id="1",
        sales_channel=None,
        state="imported",
        failed_from=None,
        place_body={},
        value=1100,
        invoices=[ENTRY],
        invoice_number="NF1",
        cancel_reason=None,
        canceled_from=None,
        needs_attention=None,
        attempts=0,
        last_error=None,
        last_error_code=None,
        last_http_status=None,
        wait_reason=None,
        vtex_status=None,
        vtex_status_at=None,
        vtex_status_since=None,
        requests_window_at=None,
        requests_in_window=0,
        intent=None,
        intent_attempt=None,
        intent_at=None,
        next_run_at=None,
        lease_owner=None,
        lease_expires_at=None,
        version=1,
        authorized_at=None,
        created_at=NOW,
        updated_at=NOW,
        state_changed_at=NOW,
    )
    return replace(base, **fields)  # type: ignore[arg-type]


def test_open_intent_is_reconciled_before_anything_else() -> None:
    """Whatever the state, an open intent means: ask VTEX first."""
    decided = plan(row(state="created", intent="authorize-dispatch"), NOW, GRACE, POLICIES)
    assert (decided.kind, decided.action) == (Kind.RECONCILE, Action.AUTHORIZE)


def test_a_cancel_asked_for_under_an_open_intent_waits_for_its_reconcile() -> None:
    """`cancel` while a Start handling's outcome is unknown: VTEX is asked about that call first
    (the cancel never races it), and the cancel is what comes once it is settled."""
    under = plan(
        row(state="ready-for-handling", intent="start-handling", cancel_reason="x"), NOW, GRACE, POLICIES
    )
    assert (under.kind, under.action) == (Kind.RECONCILE, Action.START_HANDLING)
    settled = plan(row(state="ready-for-handling", cancel_reason="x"), NOW, GRACE, POLICIES)
    assert (settled.kind, settled.action) == (Kind.WRITE, Action.CANCEL)


def test_first_look_is_at_the_end_of_the_grace_period() -> None:
    """Authorized 10 minutes ago with a 30-minute grace: nothing until 20 minutes (plus margin) from now."""
    authorized = NOW - timedelta(minutes=10)
    decided = plan(row(state="dispatch-authorized", authorized_at=authorized), NOW, GRACE, POLICIES)
    assert decided.kind is Kind.AWAIT
    assert decided.due_at == authorized + GRACE + POLICIES.grace_margin
    assert decided.reason is not None and "grace period" in decided.reason


def test_at_the_end_of_the_grace_period_start_handling_is_the_look() -> None:
    """Grace over: Start handling is sent directly; its 204 proves ready-for-handling."""
    authorized = NOW - GRACE - timedelta(minutes=1)
    decided = plan(row(state="dispatch-authorized", authorized_at=authorized), NOW, GRACE, POLICIES)
    assert (decided.kind, decided.action) == (Kind.WRITE, Action.START_HANDLING)


def test_vtex_still_in_its_window_is_polled_with_growing_intervals() -> None:
    """After a 409 (VTEX still in window-to-cancel) looks get rarer the longer it lasts, up to a cap."""
    authorized = NOW - GRACE - timedelta(minutes=1)
    waiting = row(
        state="dispatch-authorized",
        authorized_at=authorized,
        state_changed_at=authorized,
        vtex_status="window-to-cancel",
        vtex_status_at=authorized + GRACE,  # seen after the order entered dispatch-authorized
    )
    delays = []
    for minutes_late in (0.1, 1, 5, 30, 120):
        now = authorized + GRACE + POLICIES.grace_margin + timedelta(minutes=minutes_late)
        decided = plan(waiting, now, GRACE, POLICIES)
        assert decided.kind is Kind.AWAIT
        assert decided.due_at is not None
        delays.append((decided.due_at - now).total_seconds())
    assert delays == sorted(delays)
    assert delays[-1] == POLICIES.await_ready.cap.total_seconds()


def test_poll_policy_is_derived_from_timestamps_not_counters() -> None:
    """A restarted daemon continues the same schedule: the delay depends only on time waited."""
    policy = PollPolicy(
        first=timedelta(seconds=1), growth=0.5, minimum=timedelta(seconds=2), cap=timedelta(minutes=5)
    )
    start = NOW
    assert policy.next_look(start, NOW) == NOW + timedelta(seconds=1)
    assert policy.next_look(start, NOW + timedelta(seconds=60)) == NOW + timedelta(seconds=90)
    assert policy.next_look(start, NOW + timedelta(hours=2)) == NOW + timedelta(hours=2, minutes=5)


def test_invoice_waits_for_handling_by_default() -> None:
    """After the grace period by default: an invoice would make the order uncancelable in VTEX;
    `asap` sends it as soon as the order exists in VTEX, before dispatch is authorized too."""
    authorized = NOW - timedelta(minutes=1)
    decided = plan(row(state="dispatch-authorized", authorized_at=authorized), NOW, GRACE, POLICIES)
    assert decided.action is not Action.INVOICE
    asap = Policies.for_grace(GRACE, 8, invoice_timing="asap")
    for state in ("created", "dispatch-authorized"):
        assert plan(row(state=state, authorized_at=authorized), NOW, GRACE, asap).action is Action.INVOICE
    assert plan(row(state="handling"), NOW, GRACE, POLICIES).action is Action.INVOICE


def test_handling_without_invoice_data_waits_for_an_operator() -> None:
    """Nothing will happen without outside input: no due time, and a reason that says what to do."""
    decided = plan(row(state="handling", invoices=None, invoice_number=None), NOW, GRACE, POLICIES)
    assert decided.kind is Kind.IDLE and decided.due_at is None
    assert decided.reason is not None and "orchestrator invoice" in decided.reason


def test_handling_with_invoice_sent_awaits_invoiced_shortly_after() -> None:
    """One look a second after the invoice went out; VTEX marks the order invoiced on its own."""
    sent = NOW - timedelta(milliseconds=10)
    entry = dict(ENTRY, sent_at=sent.isoformat())
    handling = row(
        state="handling", invoices=[entry], invoiced_value=1100, invoices_sent=1, state_changed_at=sent
    )
    decided = plan(handling, NOW, GRACE, POLICIES)
    assert decided.kind is Kind.AWAIT and decided.due_at == sent + timedelta(seconds=1)


def test_cancel_request_comes_before_the_main_line() -> None:
    """An operator's cancel is acted on before the next main-line call."""
    decided = plan(row(state="created", cancel_reason="customer"), NOW, GRACE, POLICIES)
    assert decided.action is Action.CANCEL


def test_final_and_failed_orders_have_nothing_due() -> None:
    """invoiced, canceled and failed orders are never scheduled."""
    for state in ("invoiced", "canceled", "failed"):
        assert plan(row(state=state), NOW, GRACE, POLICIES).due_at is None


@pytest.mark.parametrize("timing", list(InvoiceTiming))
def test_the_readme_the_planner_and_the_table_agree_on_when_the_invoice_goes_out(
    timing: InvoiceTiming,
) -> None:
    """One answer to "when may the invoice go out": the states the configuration page lists for the
    timing, the states in which the planner sends a waiting invoice, and the table's `SEND_INVOICE`."""
    readme = (Path(__file__).parents[2] / "docs" / "configuration.md").read_text(encoding="utf-8")
    [line] = [ln for ln in readme.splitlines() if ln.startswith("| `ORCHESTRATOR_INVOICE_TIMING`")]
    said = re.search(rf"`{timing}` [^(]*\(([^)]*)\)", line)
    assert said is not None, line
    in_readme = {State(name) for name in re.findall(r"`([a-z-]+)`", said.group(1))}
    policies = Policies.for_grace(GRACE, 8, invoice_timing=timing)
    planned = {
        state
        for state in State
        if plan(row(state=str(state), authorized_at=NOW - GRACE * 2), NOW, GRACE, policies).action
        is Action.INVOICE
    }
    assert in_readme == planned == set(SEND_INVOICE.sources_when(timing))
