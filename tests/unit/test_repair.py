"""Which stored orders an import may replace, and what it says when it may not."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest

from orchestrator.intake.importer import build_order
from orchestrator.intake.replace import decide
from orchestrator.store.memory import MemoryStore
from orchestrator.store.orders import Conflict, Replacement
from orchestrator.store.rows import OrderRow
from tests.factories import import_record

NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)


def stored(**changes: Any) -> OrderRow:
    record = import_record(1)
    record["order"]["marketplacePaymentValue"] = 999  # what VTEX refused (FMT007)
    return replace(MemoryStore().insert(build_order(record), NOW), **changes)


def corrected(**invoice_changes: Any) -> Any:
    record = import_record(1)
    record["invoice"].update(invoice_changes)
    return build_order(record, line=7)


def test_the_same_line_again_is_no_change_and_a_line_without_the_later_invoice_is_the_same() -> None:
    """Importing the same line again changes nothing, nor does the line without the invoice attached later."""
    row = stored(place_body=corrected().place_body)
    assert decide(row, corrected(), False, NOW, replace=False) is None
    bare = import_record(1, with_invoice=False)
    assert decide(row, build_order(bare), False, NOW, replace=True) is None


def test_a_different_line_is_reported_with_its_fields_and_how_to_correct_it() -> None:
    """A line that differs from the stored order is a problem naming the field and saying how to correct it
    (`--replace`)."""
    found = decide(stored(state="failed", failed_from="imported"), corrected(), False, NOW, replace=False)
    assert isinstance(found, Conflict)
    assert (found.line, found.field) == (7, "order.marketplacePaymentValue")
    assert "differs from the stored ABC-100001" in found.message and "--replace" in found.message


@pytest.mark.parametrize(
    ("changes", "local"),
    [
        ({"state": "imported"}, False),
        ({"state": "failed", "failed_from": "imported", "last_error_code": "FMT007"}, False),
        ({"state": "canceled"}, True),
    ],
)
def test_orders_vtex_never_accepted_are_replaced_and_keep_both_bodies(
    changes: dict[str, Any], local: bool
) -> None:
    """An order VTEX never accepted is replaced by the corrected line, back to imported, and its history
    keeps both bodies."""
    row = stored(**changes, attempts=3, last_error="Payment total (999) differs")
    found = decide(row, corrected(), local, NOW, replace=True)
    assert isinstance(found, Replacement)
    values = found.values
    assert values["state"] == "imported" and values["attempts"] == 0 and values["last_error"] is None
    assert values["place_body"]["marketplacePaymentValue"] == 1100 and values["next_run_at"] == NOW
    [event] = found.events
    assert (event["action"], event["from_state"], event["to_state"]) == ("replace", row.state, "imported")
    assert event["detail"]["previous"]["order"]["marketplacePaymentValue"] == 999
    assert event["detail"]["new"]["order"]["marketplacePaymentValue"] == 1100


@pytest.mark.parametrize(
    ("changes", "local", "says"),
    [
        ({"state": "imported", "intent": "place"}, False, "in flight"),
        ({"state": "failed", "failed_from": "created"}, False, "orchestrator cancel ABC-100001"),
        ({"state": "dispatch-authorized"}, False, "orchestrator cancel ABC-100001"),
        ({"state": "invoiced"}, False, "never replaced"),
        ({"state": "canceled"}, False, "new marketplace order id"),
    ],
)
def test_orders_vtex_accepted_or_may_have_accepted_are_never_replaced(
    changes: dict[str, Any], local: bool, says: str
) -> None:
    """An order VTEX accepted, or may have accepted (an open intent), is never replaced."""
    found = decide(stored(**changes), corrected(), local, NOW, replace=True)
    assert isinstance(found, Conflict) and says in found.message


def test_only_a_new_invoice_on_an_accepted_order_points_at_the_invoice_command() -> None:
    """A line that differs from an accepted order only by its invoice points at `orchestrator invoice`."""
    row = stored(state="handling", place_body=corrected().place_body)
    found = decide(row, corrected(invoiceNumber="NF999"), False, NOW, replace=True)
    assert isinstance(found, Conflict) and found.field == "invoice"
    assert "orchestrator invoice ABC-100001 --file" in found.message
