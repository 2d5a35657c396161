"""The looks of an account that listens to VTEX's Orders Feed, on the fake clock: Get order is only
the safety net for an event that never comes."""

from __future__ import annotations

from datetime import timedelta

from orchestrator.engine.policy import Policies
from orchestrator.ops.operations import invoice_change
from tests.factories import import_record, split_record
from tests.unit.simulation import Simulation

GRACE = timedelta(minutes=30)


def test_an_order_vtex_keeps_in_handling_for_a_day_costs_a_few_looks_not_hundreds() -> None:
    """Our invoice went out, VTEX keeps the order in handling for 24 hours and no event comes:
    at most 30 Get orders in the day (a polling account makes about 300), and the order is
    still waiting, not failed."""
    listening = Simulation(grace=GRACE, policies=Policies.for_grace(GRACE, max_attempts=8).listening())
    polling = Simulation(grace=GRACE)
    looks = {}
    for name, sim in (("listening", listening), ("polling", polling)):
        order = sim.add(import_record(1))
        sim.run(lambda s=sim, o=order: s.row(o).invoice_sent)
        sim.sandbox.oms.pin(order, "handling")
        sim.run(within=timedelta(hours=24))
        assert sim.row(order).state == "handling"
        looks[name] = sim.operations(order).count("get-order")
    assert looks["listening"] <= 30 and looks["polling"] > 200, looks


def test_an_order_waiting_days_for_its_last_invoice_looks_rarely_then_finishes() -> None:
    """Two of three invoices sent, the third comes three days later: meanwhile the order waits in
    handling (not failed), looking at VTEX about hourly once it knows VTEX's value; attached
    then, the third goes out and the order is invoiced with three invoice numbers."""
    sim = Simulation(grace=GRACE)
    record = split_record(1)
    third = record["invoices"].pop()
    order = sim.add(record)
    sim.run(lambda: sim.row(order).invoices_sent == 2)
    sim.run(within=timedelta(days=3))
    row = sim.row(order)
    assert (row.state, row.vtex_value) == ("handling", 1700)
    assert "invoiced 2 of 2 invoices: 1200 of 1700" in (row.wait_reason or "")
    assert sim.operations(order).count("get-order") <= 3 * 24 + 15
    attached = invoice_change(order, third)(row, sim.now)
    assert isinstance(attached, tuple)
    values, _events, _message = attached
    sim.store.change(order, **values)
    sim.run(lambda: sim.row(order).state == "invoiced", within=timedelta(minutes=5))
    entry = sim.sandbox.oms.ledger.get(order)
    assert entry is not None and entry.invoice_numbers == ["NF100001-1", "NF100001-2", "NF100001-3"]
    assert sim.operations(order).count("send-invoice") == 3
    assert sim.invoices_taken == [("Output", 900), ("Output", 300), ("Output", 500)]  # for the metrics
