"""The order state machine: legal paths, refused moves, and the per-step metadata."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from states import (
    IN_FLIGHT,
    MAIN_LINE,
    ORDER_MACHINE,
    PHASES,
    STEP_BY_TRIGGER,
    STEPS,
    IllegalTransition,
    State,
    denied_trigger,
    resume_trigger,
)


@dataclass
class Order:
    state: str
    order_id: str = "ABC-1"


def test_main_line_reaches_invoiced() -> None:
    """place, authorize, become_ready, start_handling, complete lead from imported to invoiced."""
    order = Order(State.IMPORTED)
    path = [ORDER_MACHINE.fire(order, step.trigger).dest for step in MAIN_LINE]
    assert path == ["created", "dispatch-authorized", "ready-for-handling", "handling", "invoiced"]


def test_illegal_move_raises_with_order_state_and_allowed_triggers() -> None:
    """Completing an order that is only created is refused, and the error says what is allowed."""
    order = Order(State.CREATED, "XYZ-9")
    with pytest.raises(IllegalTransition) as caught:
        ORDER_MACHINE.fire(order, "complete")
    assert order.state == "created"
    message = str(caught.value)
    assert "XYZ-9" in message and "'complete'" in message and "'created'" in message
    assert "authorize" in message


def test_unknown_trigger_is_an_illegal_transition() -> None:
    """A trigger the machine does not know is refused the same way, not with an AttributeError."""
    with pytest.raises(IllegalTransition):
        ORDER_MACHINE.fire(Order(State.IMPORTED), "teleport")


@pytest.mark.parametrize("state", ["created", "dispatch-authorized", "ready-for-handling", "handling"])
def test_invoice_can_be_sent_once_the_order_exists(state: str) -> None:
    """send_invoice is an internal transition allowed from created on; the state does not change."""
    order = Order(state)
    change = ORDER_MACHINE.fire(order, "send_invoice")
    assert (change.source, change.dest, order.state) == (state, state, state)


@pytest.mark.parametrize("state", ["imported", "invoiced", "failed", "canceled"])
def test_invoice_cannot_be_sent_before_the_order_exists_or_after_the_end(state: str) -> None:
    """Before Place, or in a final state, there is nothing to invoice."""
    with pytest.raises(IllegalTransition):
        ORDER_MACHINE.fire(Order(state), "send_invoice")


def test_only_handling_orders_become_invoiced() -> None:
    """VTEX reports invoiced only after handling started, so complete is only legal from handling."""
    for state in State:
        allowed = ORDER_MACHINE.can_fire(str(state), "complete")
        assert allowed == (state == State.HANDLING), state


@pytest.mark.parametrize("state", [str(s) for s in IN_FLIGHT])
def test_failed_orders_resume_where_they_failed(state: str) -> None:
    """fail then resume_<state> returns the order to the state it failed in."""
    order = Order(state)
    ORDER_MACHINE.fire(order, "fail")
    assert order.state == "failed"
    ORDER_MACHINE.fire(order, resume_trigger(State(state)))
    assert order.state == state


def test_resume_is_refused_unless_failed() -> None:
    """An order that did not fail cannot be 'resumed' into another state."""
    with pytest.raises(IllegalTransition):
        ORDER_MACHINE.fire(Order(State.CREATED), resume_trigger(State.HANDLING))


def test_cancel_is_refused_once_invoiced() -> None:
    """VTEX refuses to cancel an invoiced order; the machine agrees."""
    with pytest.raises(IllegalTransition):
        ORDER_MACHINE.fire(Order(State.INVOICED), "cancel")


def test_a_cancel_waits_in_canceling_until_vtex_decides() -> None:
    """VTEX cancels asynchronously: canceling, then canceled, or back where it was when denied."""
    order = Order(State.FAILED)
    ORDER_MACHINE.fire(order, "cancel")
    assert order.state == "canceling"
    ORDER_MACHINE.fire(order, "canceled")
    assert order.state == "canceled"
    denied = Order(State.HANDLING)
    ORDER_MACHINE.fire(denied, "cancel")
    ORDER_MACHINE.fire(denied, denied_trigger(State.HANDLING))
    assert denied.state == "handling"


def test_the_table_of_states_is_complete_and_consistent() -> None:
    """Every state has a row; every state an order moves on from names the step that moves it; an
    awaiting step's poll policy exists; what a step proves, stamps or remembers exists."""
    from dataclasses import fields

    from orchestrator.engine.policy import Policies
    from orchestrator.store.rows import OrderRow

    columns = {f.name for f in fields(OrderRow)}
    assert set(PHASES) == set(State)
    for state in IN_FLIGHT:
        step = PHASES[state].next
        assert step is not None and state in step.sources, state
    for step in STEPS:
        if step.awaits is not None:
            assert hasattr(Policies(), step.poll or ""), step.trigger
        assert all(trigger in STEP_BY_TRIGGER for trigger in step.proves), step.trigger
        for column in (step.stamp, step.remembers):
            assert column is None or column in columns, (step.trigger, column)


def test_one_machine_serves_many_orders_without_registering_them() -> None:
    """Orders are triggered through plain objects; the machine keeps no per-order models."""
    orders = [Order(State.IMPORTED, f"ABC-{i}") for i in range(2000)]
    for order in orders:
        ORDER_MACHINE.fire(order, "place")
    assert {o.state for o in orders} == {"created"}
    assert ORDER_MACHINE._machine.models == []
