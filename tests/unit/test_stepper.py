"""The step engine's decisions, on a fake clock against the in-process sandbox: the grace period,
backoff, reconciling, lease expiry, statuses VTEX holds orders in, cancellation and the guards.
Simulated hours take milliseconds."""

from __future__ import annotations

import itertools
from datetime import timedelta
from typing import Any

import pytest

from orchestrator.config.settings import load_settings
from orchestrator.config.stuck_rules import StuckRules
from orchestrator.engine.policy import Policies
from orchestrator.engine.stepper import PERFORM
from orchestrator.ops.operations import retry_change, return_change
from orchestrator.ops.stuck import diagnose
from orchestrator.sandbox import FaultConfig
from orchestrator.store.rows import OrderRow
from states import TABLE, Action, State, Step, invoices, rules
from tests.factories import import_record, place_body, return_for
from tests.unit.simulation import START, Simulation

GRACE = timedelta(minutes=30)


def gaps(times: list[float]) -> list[float]:
    return [later - earlier for earlier, later in itertools.pairwise(times)]


def settled(sim: Simulation, order_id: str, *states: str) -> bool:
    return sim.row(order_id).state in states


def test_an_order_is_invoiced_with_five_calls_and_start_handling_waits_for_the_grace_period() -> None:
    """Place, Authorize, then nothing until VTEX's 30 minutes are over, Start handling, invoice,
    one Get order that sees invoiced."""
    sim = Simulation(grace=GRACE)
    order = sim.add(import_record(1))
    sim.run(lambda: settled(sim, order, "invoiced"))
    assert sim.row(order).state == "invoiced"
    assert sim.operations(order) == [
        "place-order",
        "authorize-dispatch",
        "start-handling",
        "send-invoice",
        "get-order",
    ]
    start_handling = next(e for e in sim.requests(order) if e["operation"] == "start-handling")
    waited = start_handling["at"] - START.timestamp()
    assert GRACE.total_seconds() <= waited <= GRACE.total_seconds() + 60  # the grace, plus a small margin


def test_when_vtex_grace_outlasts_ours_it_is_polled_less_and_less_often() -> None:
    """VTEX's grace period is an hour, ours 30 minutes: a 409, then Get orders whose intervals grow."""
    sim = Simulation(grace=GRACE, sandbox_grace=timedelta(hours=1))
    order = sim.add(import_record(1))
    sim.run(lambda: settled(sim, order, "handling"))
    looks = [e["at"] for e in sim.requests(order) if e["operation"] == "get-order"]
    waits = gaps(looks)
    assert waits == sorted(waits) and len(looks) <= 12
    assert sim.sandbox.oms.ledger.get(order).start_handling_refused == 1  # type: ignore[union-attr]


def test_a_write_whose_answer_says_it_failed_after_applying_is_reconciled_not_resent() -> None:
    """Every write answered 500 after VTEX applied it: each is looked up and found, never sent twice."""
    sim = Simulation(grace=GRACE)
    sim.sandbox.faults.configure(FaultConfig(error_after=1.0))
    order = sim.add(import_record(1))
    sim.run(lambda: settled(sim, order, "invoiced"))
    entry = sim.sandbox.oms.ledger.get(order)
    assert entry is not None
    assert (entry.places_accepted, entry.start_handling_accepted, entry.invoice_numbers) == (
        1,
        1,
        ["NF100001"],
    )
    assert sim.row(order).state == "invoiced"


def test_retries_back_off_exponentially_then_the_order_fails_with_the_reason() -> None:
    """VTEX unavailable (503) for every Place, its reads answered: each 503 is looked up (a write
    may have been applied), found not applied, sent again after a wait about twice the last; after
    8 attempts the order fails with the reason."""
    sim = Simulation(grace=GRACE)
    sim.sandbox.faults.configure(FaultConfig(error_before=1.0, only_writes=True))
    order = sim.add(import_record(1))
    sim.run(lambda: settled(sim, order, "failed"))
    row = sim.row(order)
    assert row.state == "failed" and "503" in (row.last_error or "")
    places = [e["at"] for e in sim.requests(order) if e["operation"] == "place-order"]
    assert len(places) == 8
    waits = gaps(places)
    # each wait about twice the last (jitter of a quarter either way leaves at least 1.2 times)
    assert all(later > earlier * 1.2 for earlier, later in itertools.pairwise(waits))


def test_a_lease_that_expires_hands_the_order_over_and_its_intent_is_reconciled() -> None:
    """A worker claims, writes its intent, sends, and dies before saving: after the lease expires
    the next claim asks VTEX first, and nothing is sent twice."""
    sim = Simulation(grace=GRACE)
    order = sim.add(import_record(1))
    row = sim.store.claim(sim.row(order).id, "dead-worker", sim.now, timedelta(minutes=2))
    assert row is not None

    async def die_after_sending() -> None:
        row.intent, row.intent_attempt, row.intent_at = "place-order", 1, sim.now
        assert await sim.store.write_intent(row)
        await sim.client.place_order(row.affiliate_id, row.place_body, None)  # VTEX applies it

    import asyncio

    asyncio.run(die_after_sending())
    assert sim.store.due(sim.now + timedelta(minutes=1)) == []  # still leased
    sim.run(lambda: settled(sim, order, "invoiced"))
    assert sim.sandbox.oms.ledger.get(order).places_accepted == 1  # type: ignore[union-attr]
    reconciled = [e for e in sim.store.history(order) if e["kind"] == "reconcile"]
    assert reconciled and reconciled[0]["message"] == "applied"


@pytest.mark.parametrize("status", ["payment-pending", "cancellation-requested"])
def test_an_order_vtex_holds_waits_politely_for_hours(status: str) -> None:
    """Held by VTEX for 6 simulated hours: looks get rarer (at most every 15 minutes), the reason
    names the status, nothing else is sent, and the order is still there when VTEX lets it go."""
    sim = Simulation(grace=GRACE)
    record = import_record(1)
    order = sim.add(record)
    sim.sandbox.oms.place("ABC", None, [record["order"]])
    sim.sandbox.oms.pin(order, status)
    sim.run(within=timedelta(hours=6))
    row = sim.row(order)
    assert row.state in ("created", "dispatch-authorized") and row.wait_reason is not None
    assert f"VTEX holds the order in {status}" in row.wait_reason
    looks = [e["at"] for e in sim.requests(order) if e["operation"] == "get-order"]
    assert len(sim.requests(order)) < 40
    assert max(gaps(looks)) <= 15 * 60 + 1
    sim.sandbox.oms.pin(order, "ready-for-handling", hold=False)
    sim.run(lambda: settled(sim, order, "invoiced"), within=timedelta(hours=1))
    assert sim.row(order).state == "invoiced"


def test_an_order_canceled_in_vtex_admin_during_the_grace_period_is_canceled_here() -> None:
    """Deterministic: the order waits out the grace period; VTEX's Admin cancels it; the next look
    (Start handling, answered 409) finds it canceled."""
    sim = Simulation(grace=GRACE)
    order = sim.add(import_record(1))
    sim.run(lambda: settled(sim, order, "dispatch-authorized"))
    sim.advance(timedelta(minutes=5))
    sim.sandbox.oms.cancel(order, {"reason": "customer called"})
    sim.run(lambda: settled(sim, order, "canceled"))
    assert sim.row(order).state == "canceled"
    assert [e["action"] for e in sim.store.history(order) if e["kind"] == "transition"][
        -1
    ] == "notice_canceled"


@pytest.mark.parametrize(
    ("mode", "final"), [("accept", "canceled"), ("deny", "invoiced"), ("stick", "canceling")]
)
def test_a_cancel_after_the_grace_period_waits_for_vtex_to_decide(mode: str, final: str) -> None:
    """Accepted: canceled. Denied: back where it was, and on to invoiced. Stuck: still canceling
    after a day, looking at most every 15 minutes."""
    sim = Simulation(grace=GRACE, cancel_mode=mode, cancel_delay_seconds=600)
    order = sim.add(import_record(1, with_invoice=False))
    sim.run(lambda: settled(sim, order, "handling"))
    sim.store.change(order, cancel_reason="customer changed their mind", next_run_at=sim.now)
    sim.run(lambda: settled(sim, order, "canceled"), within=timedelta(days=1))
    if mode == "deny":
        entries = [invoices.entry(import_record(1)["invoice"], sim.now.isoformat())]
        sim.store.change(order, invoices=entries, invoice_number="NF100001", next_run_at=sim.now)
        sim.run(lambda: settled(sim, order, "invoiced"))
    assert sim.row(order).state == final
    if mode == "stick":
        looks = [e["at"] for e in sim.requests(order) if e["operation"] == "get-order"]
        assert max(gaps(looks)) <= 15 * 60 + 1
        assert "cancellation-requested" in (sim.row(order).wait_reason or "")


def test_a_retry_after_of_zero_cannot_make_a_loop() -> None:
    """429 with Retry-After 0 to everything: the waits grow, and the request guard stops the order."""
    policies = Policies.for_grace(GRACE, max_attempts=8, max_requests_per_hour=20)
    sim = Simulation(grace=GRACE, policies=policies)
    sim.sandbox.faults.configure(FaultConfig(rate_limit=1.0, retry_after_seconds=0))
    order = sim.add(import_record(1))
    sim.run(within=timedelta(minutes=50))
    row = sim.row(order)
    assert row.needs_attention == "request-guard" and len(sim.requests(order)) == 20
    times = [e["at"] for e in sim.requests(order)]
    waits = gaps(times)
    assert waits == sorted(waits)
    diagnosis = diagnose(row, sim.now, StuckRules.parse("", GRACE), GRACE)  # what `status --stuck` says
    assert "request guard" in diagnosis.reason


def test_an_answer_that_is_not_vtexs_pauses_the_account_and_spends_no_attempt() -> None:
    """An HTML page for every call: the account pauses, longer each time; the order's attempts stay
    untouched; once VTEX answers again the order goes on."""
    sim = Simulation(grace=GRACE)
    sim.sandbox.faults.configure(FaultConfig(html=1.0))
    order = sim.add(import_record(1))
    sim.run(within=timedelta(minutes=10))
    row = sim.row(order)
    assert row.state == State.IMPORTED and row.attempts == 0
    assert sim.guard.pause_state is not None and "does not answer like VTEX" in sim.guard.pause_state.reason
    sim.sandbox.faults.configure(FaultConfig())
    sim.run(lambda: settled(sim, order, "invoiced"))
    assert sim.row(order).state == "invoiced"
    assert sim.sandbox.oms.ledger.get(order).places_accepted == 1  # type: ignore[union-attr]


def test_a_refused_tracking_update_stops_the_order_instead_of_looping() -> None:
    """Invoiced, then VTEX refuses the tracking PATCH: one request, then nothing for a day."""
    sim = Simulation(grace=GRACE, tracking_refusal=400)
    order = sim.add(import_record(1))
    sim.run(lambda: settled(sim, order, "invoiced"))
    sim.store.change(order, invoices=tracked(sim.row(order), "TR1"), next_run_at=sim.now)
    sim.run(within=timedelta(days=1))
    assert sim.row(order).needs_attention == "tracking-refused"
    assert sim.operations(order).count("send-tracking") == 1


def test_vtex_holding_a_different_order_under_our_id_fails_place_instead_of_taking_it_for_ours() -> None:
    """FMT009 ("already exists") proves our Place only when VTEX's order is ours: here the same id
    carries other items (same value), so the order fails with VTEX's code, saying what differs,
    and nothing more is sent for it."""
    sim = Simulation(grace=GRACE)
    theirs = place_body("100001", skus=(("7", 2, 450),))  # 2 x 450 + 200: the same value as ours
    assert sim.sandbox.oms.place("ABC", None, [theirs]).status == 200
    order = sim.add(import_record(1))
    sim.run(lambda: settled(sim, order, "failed", "created"))
    row = sim.row(order)
    assert (row.state, row.last_error_code) == ("failed", "FMT009")
    assert "items 2 x 7, not 1 x 5" in (row.last_error or "")
    assert sim.operations(order) == ["place-order", "get-order"]


def test_an_order_vtex_shows_invoiced_without_our_invoice_is_not_reported_invoiced() -> None:
    """Our invoice was sent, yet VTEX's packages hold only another number (another system
    invoiced it): the order stops for a person with that reason instead of `invoiced`."""
    sim = Simulation(grace=GRACE, invoice_delay_seconds=60)
    order = sim.add(import_record(1))
    sim.run(lambda: sim.row(order).invoice_sent)
    vtex_order = sim.sandbox.oms.find(order)
    assert vtex_order is not None
    vtex_order.packages = {"NF-OTHER": {**vtex_order.packages["NF100001"], "invoiceNumber": "NF-OTHER"}}
    sim.advance(timedelta(minutes=5))
    sim.run(lambda: sim.row(order).needs_attention is not None or settled(sim, order, "invoiced"))
    row = sim.row(order)
    assert (row.state, row.needs_attention) == ("handling", "invoice-missing")
    assert "not with our invoices NF100001 (its invoices: NF-OTHER)" in (row.last_error or "")


def test_a_side_step_is_a_row_of_the_table() -> None:
    """A side step the product does not have: a tracking number attached after the invoice went
    out, sent while the order is still in handling (VTEX verifying the invoice) instead of once
    invoiced. One `Step` row added with `TABLE.with_side_step` and its `PERFORM` row are all it
    takes: the planner plans it, the engine sends it once and marks it sent, and the product's own
    tracking step, due only once invoiced, finds nothing left to send."""
    early = Step(
        "send_tracking_early",
        (State.HANDLING,),
        None,
        lambda vtex_order, facts: (
            facts.next_tracking is not None
            and rules.tracking_present(
                vtex_order, facts.next_tracking["number"], facts.next_tracking["tracking"]["trackingNumber"]
            )
        ),
        action="send-tracking-early",  # type: ignore[arg-type]  # a write the product's Action lacks
        sends=invoices.TRACKING,
        pending=lambda facts: facts.tracking_waiting,
    )
    perform = {**PERFORM, "send-tracking-early": PERFORM[Action.TRACKING]}
    sim = Simulation(
        grace=GRACE, table=TABLE.with_side_step(early), perform=perform, invoice_delay_seconds=60
    )
    order = sim.add(import_record(1))
    sim.run(lambda: sim.row(order).invoice_sent)
    sim.store.change(order, invoices=tracked(sim.row(order), "BR1"), next_run_at=sim.now)
    sim.run(lambda: settled(sim, order, "invoiced"))
    writes = [op for op in sim.operations(order) if op != "get-order"]  # VTEX verifies for a minute
    assert writes == ["place-order", "authorize-dispatch", "start-handling", "send-invoice", "send-tracking"]
    moves = [e["action"] for e in sim.store.history(order) if e["kind"] == "transition"]
    assert "send_tracking_early" in moves and "send_tracking" not in moves
    assert sim.row(order).tracking_sent


def tracked(row: OrderRow, number: str) -> list[dict[str, Any]]:
    """The order's invoices with `number` as its first invoice's tracking, not sent yet."""
    first, *rest = row.invoices or []
    tracking = {"trackingNumber": number, "courier": "Correios", "trackingUrl": None, "dispatchedDate": None}
    return [{**first, "tracking": tracking, "tracking_sent_at": None}, *rest]


def test_a_refused_return_stops_the_invoiced_order_for_a_person_and_retry_sends_it() -> None:
    """VTEX refuses the return (400): one request, the order stays invoiced and stops with the
    reason; `retry` lets it go, and the return is then sent once."""
    sim = Simulation(grace=GRACE)
    order = sim.add(import_record(1))
    sim.run(lambda: settled(sim, order, "invoiced"))
    back = return_for(import_record(1)["invoice"], "RT1")
    values, _events, _message = _applied_change(return_change(order, back), sim.row(order), sim)
    sim.store.change(order, **values)
    sim.sandbox.oms.config.invoice_refusals = 1  # ORD039, "cannot accept invoice"
    sim.run(within=timedelta(hours=1))
    row = sim.row(order)
    assert (row.state, row.needs_attention, row.returns_sent) == ("invoiced", "return-refused", 0)
    assert sim.operations(order).count("send-invoice") == 2  # the sale, then the refused return
    settings = load_settings(None, database_url="sqlite://", vtex_base_url="http://127.0.0.1:9")
    values, _events, _message = _applied_change(retry_change(order, settings), row, sim)
    sim.store.change(order, **values)
    sim.run(lambda: sim.row(order).returns_sent == 1, within=timedelta(minutes=5))
    entry = sim.sandbox.oms.ledger.get(order)
    assert entry is not None and entry.returned_total == 900 and entry.invoice_numbers == ["NF100001", "RT1"]


def _applied_change(change: Any, row: OrderRow, sim: Simulation) -> tuple[dict[str, Any], Any, str]:
    """An operator's change (`orchestrator.ops.operations`) as it would be written now."""
    result = change(row, sim.now)
    assert isinstance(result, tuple), result
    return result  # type: ignore[no-any-return]
