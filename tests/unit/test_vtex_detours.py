"""VTEX's documented detours, on the fake clock against the in-process sandbox: the answers where
VTEX asks to wait (an authorization it still waits for, ORD039 on the invoice, an incomplete
order's null status), a 403 that is about one permission, `workflowIsInError`, and an order value
that differs from ours. Each of these failed an order, or paused its whole account, before."""

from __future__ import annotations

import itertools
from datetime import timedelta

from orchestrator.config.stuck_rules import StuckRules
from orchestrator.ops.stuck import diagnose
from orchestrator.sandbox import FaultConfig
from states import Attention, Waiting
from tests.factories import import_record
from tests.unit.simulation import Simulation

GRACE = timedelta(minutes=30)


def state(sim: Simulation, order: str) -> str:
    return str(sim.row(order).state)


def no_account_pause(sim: Simulation) -> None:
    assert sim.guard.pause_state is None, sim.guard.pause_state


def test_a_404_from_authorize_right_after_place_is_a_wait_not_a_failure() -> None:
    """VTEX's order index is eventually consistent: `/fulfill` answers 404 for a few seconds after
    Place while Get order shows waiting-ffmt-authorization. The order waits and is invoiced."""
    sim = Simulation(grace=GRACE, fulfill_unknown_seconds=15)
    order = sim.add(import_record(1))
    sim.run(lambda: state(sim, order) in ("invoiced", "failed"), on_step=no_account_pause)
    assert state(sim, order) == "invoiced"
    assert sim.sandbox.oms.ledger.get(order).authorizations == 1  # type: ignore[union-attr]
    refused = [
        e for e in sim.requests(order) if e["operation"] == "authorize-dispatch" and e["status"] == 404
    ]
    assert 1 <= len(refused) <= 8  # tried again after 1 s, then less and less often
    assert not [e for e in sim.store.history(order) if e["kind"] == "error"]


def test_an_order_waiting_for_the_sellers_manual_authorization_waits_up_to_days_then_goes_on() -> None:
    """Price divergence: VTEX holds the order in waiting-for-manual-authorization and refuses
    Authorize dispatch until the seller approves in Admin. Six hours of waiting: never failed,
    Authorize not sent again while VTEX shows that status, looks get rarer (at most every 15
    minutes), the reason names the status and what to do, and `status --stuck` lists it with
    that reason; approved, Authorize goes again and the order is invoiced."""
    sim = Simulation(grace=GRACE, manual_authorization=True)
    order = sim.add(import_record(1))
    sim.run(within=timedelta(hours=6), on_step=no_account_pause)
    row = sim.row(order)
    assert row.state == "created" and row.wait_code == Waiting.VTEX_HOLDS
    assert row.wait_reason is not None
    assert "VTEX holds the order in waiting-for-manual-authorization since" in row.wait_reason
    assert "approve it in VTEX Admin" in row.wait_reason
    assert sim.operations(order).count("authorize-dispatch") == 1
    looks = [e["at"] for e in sim.requests(order) if e["operation"] == "get-order"]
    assert max(later - earlier for earlier, later in itertools.pairwise(looks)) <= 15 * 60 + 1
    assert len(looks) < 45  # a dozen in the first hours, then four an hour
    stuck = diagnose(row, sim.now, StuckRules.parse(None, GRACE), GRACE)
    assert "waiting-for-manual-authorization" in stuck.reason and "cancel" in stuck.suggestion
    assert sim.sandbox.oms.approve(order) is not None
    sim.run(lambda: state(sim, order) == "invoiced", within=timedelta(hours=2))
    assert state(sim, order) == "invoiced"


def test_ord039_on_the_invoice_is_a_wait_and_the_invoice_goes_out_once() -> None:
    """ "Order ... is in state handling and cannot accept invoice" (ORD039, no documented HTTP
    status): a status conflict VTEX resolves. Refused twice, the invoice goes out on the third
    try and the order is invoiced; the refusals are in its history, not as a failure."""
    sim = Simulation(grace=GRACE, invoice_refusals=2)
    order = sim.add(import_record(1))
    sim.run(lambda: state(sim, order) in ("invoiced", "failed"), on_step=no_account_pause)
    assert state(sim, order) == "invoiced"
    entry = sim.sandbox.oms.ledger.get(order)
    assert entry is not None and entry.invoices_refused == 2 and len(entry.invoice_numbers) == 1
    calls = [e for e in sim.store.history(order) if e["kind"] == "call" and e["error_code"] == "ORD039"]
    assert len(calls) == 2


def test_a_null_status_is_an_incomplete_order_and_never_pauses_the_account() -> None:
    """VTEX documents `status: null` for an incomplete order. Three such reads: the order waits,
    saying VTEX reports it incomplete; the account is never paused; then it is invoiced."""
    sim = Simulation(grace=GRACE, null_status_reads=3, invoice_delay_seconds=5)
    order = sim.add(import_record(1))
    reasons: list[str] = []

    def watch(s: Simulation) -> None:
        no_account_pause(s)
        reasons.append(s.row(order).wait_reason or "")

    sim.run(lambda: state(sim, order) in ("invoiced", "failed"), on_step=watch)
    assert state(sim, order) == "invoiced"
    assert any("incomplete (status null)" in reason for reason in reasons), reasons
    reads = [e for e in sim.requests(order) if e["operation"] == "get-order"]
    assert len(reads) >= 4


def test_a_403_pauses_only_the_calls_needing_that_permission() -> None:
    """A key without Notify invoice: every order is placed, authorized and started; invoices
    wait, each order saying which License Manager resource is missing; one 403 per pause period,
    not one per order; the account itself is never paused. Granted, the invoices go out."""
    sim = Simulation(grace=GRACE, forbidden=("send-invoice",))
    orders = [sim.add(import_record(n)) for n in range(1, 6)]
    sim.run(within=timedelta(hours=1), on_step=no_account_pause)
    for order in orders:
        row = sim.row(order)
        assert row.state == "handling" and row.wait_code == Waiting.PERMISSION
        assert "'Notify invoice'" in (row.wait_reason or "")
    refused = [e for e in sim.requests() if e["status"] == 403]
    assert {e["operation"] for e in refused} == {"send-invoice"}
    assert len(refused) <= 1 + 30 // 5  # the first, then one probe per 5-minute pause
    assert "Notify invoice" in sim.guard.permissions
    sim.sandbox.oms.config.forbidden = ()
    sim.run(lambda: all(state(sim, o) == "invoiced" for o in orders), within=timedelta(hours=1))
    assert [state(sim, o) for o in orders] == ["invoiced"] * 5
    assert sim.guard.permissions == {}


def test_workflow_is_in_error_stops_the_order_for_a_person_at_once() -> None:
    """Get order's `workflowIsInError`: "an error that cannot be solved by automatic retry". The
    next look stops the order, with VTEX's words and the advice to look at it in VTEX Admin."""
    sim = Simulation(grace=GRACE, invoice_delay_seconds=3600)  # VTEX "verifying" the invoice
    order = sim.add(import_record(1))
    sim.run(lambda: sim.row(order).invoice_sent)
    vtex_order = sim.sandbox.oms.find(order)
    assert vtex_order is not None
    vtex_order.workflow_in_error = True
    sim.run(lambda: sim.row(order).needs_attention is not None, within=timedelta(minutes=30))
    row = sim.row(order)
    assert row.needs_attention == Attention.VTEX_WORKFLOW_ERROR and row.next_run_at is None
    assert "cannot be solved by automatic retry" in (row.last_error or "")
    stuck = diagnose(row, sim.now, StuckRules.parse(None, GRACE), GRACE)
    assert "VTEX Admin" in stuck.suggestion and "retry" in stuck.suggestion


def test_a_vtex_order_value_that_differs_from_ours_is_still_our_order() -> None:
    """VTEX documents that its order value may differ from `marketplacePaymentValue` (price
    divergence): Place answered 500 after applying, the reconcile finds our order (same
    marketplace id, affiliate and items) at another value, and takes it as ours."""
    sim = Simulation(grace=GRACE)
    sim.sandbox.faults.configure(FaultConfig(seed=1, error_after=1.0, only_writes=True))
    order = sim.add(import_record(1))
    sim.run(lambda: sim.sandbox.oms.find(order) is not None, within=timedelta(minutes=1))
    sim.sandbox.faults.configure(FaultConfig())
    vtex_order = sim.sandbox.oms.find(order)
    assert vtex_order is not None
    vtex_order.items_total -= 100  # VTEX's value is now below ours
    sim.run(lambda: state(sim, order) in ("invoiced", "failed"))
    assert state(sim, order) == "invoiced"
    assert sim.sandbox.oms.ledger.get(order).places_accepted == 1  # type: ignore[union-attr]
