"""The looks of an account that listens to VTEX's Orders Feed, on the fake clock: Get order is only
the safety net for an event that never comes."""

from __future__ import annotations

from datetime import timedelta

from orchestrator.engine.policy import Policies
from tests.factories import import_record
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
