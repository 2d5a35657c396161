"""VTEX's documented waits end to end: the real daemon against the sandbox over a real socket, the
sandbox giving the answers VTEX documents off the happy path (an Authorize dispatch its index is
not ready for, ORD039 on the invoice, an incomplete order's null status, the seller's manual
authorization). The orders wait and finish; none fails, and the account is never paused."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from orchestrator.clock import utcnow
from orchestrator.config.settings import Settings
from orchestrator.intake.importer import import_lines
from orchestrator.sandbox import Sandbox, ServerThread
from orchestrator.store.open import open_store
from states import Waiting
from tests.daemon_runs import run_until, states
from tests.factories import import_lines as lines_of

pytestmark = pytest.mark.sqlite_only  # the engine's decisions, not the storage's


def test_orders_wait_through_vtexs_detours_and_are_invoiced(
    make_sandbox: Callable[..., Sandbox], make_settings: Callable[..., Settings]
) -> None:
    """Authorize answered 404 for a second after Place, the first two invoices refused with
    ORD039, the first Get order of each order with `status: null`: every order is invoiced,
    each VTEX write applied once, and no account pause was ever recorded."""
    sandbox = make_sandbox(
        grace_seconds=0.3, fulfill_unknown_seconds=1.0, invoice_refusals=2, null_status_reads=1
    )
    with ServerThread(sandbox) as server:
        settings = make_settings(sandbox, server.url)
        store = open_store(settings.database_url)
        import_lines(lines_of(3), store, utcnow())
        paused: list[Any] = []
        run_until(
            settings,
            store,
            lambda: states(store) == {"invoiced": 3},
            timeout=60,
            during=lambda _elapsed: paused.extend(p for p in store.account_pauses() if p not in paused),
        )
    assert states(store) == {"invoiced": 3}
    assert paused == []
    entries = [e for e in sandbox.oms.ledger.entries() if e.order_id.startswith("ABC-")]
    assert all(
        e.places_accepted == 1 and e.authorizations == 1 and len(e.invoice_numbers) == 1 for e in entries
    )
    assert sum(e.invoices_refused for e in entries) == 2
    refused = [r for r in sandbox.oms.ledger.request_log if r["operation"] == "authorize-dispatch"]
    assert any(r["status"] == 404 for r in refused)


def test_an_order_waits_for_the_sellers_approval_and_goes_on_once_given(
    make_sandbox: Callable[..., Sandbox], make_settings: Callable[..., Settings]
) -> None:
    """VTEX holds the order for the seller's manual authorization and refuses Authorize: the order
    waits in `created`, saying why; approved in VTEX (the sandbox's control API), it is invoiced."""
    sandbox = make_sandbox(grace_seconds=0.3, manual_authorization=True)
    with ServerThread(sandbox) as server:
        settings = make_settings(sandbox, server.url)
        store = open_store(settings.database_url)
        import_lines(lines_of(1), store, utcnow())
        seen: dict[str, Any] = {}

        def approve_once_waiting(_elapsed: float) -> None:
            row = store.find("ABC-100000")
            if "approved" not in seen and row is not None and row.wait_code == Waiting.VTEX_HOLDS:
                seen["reason"] = row.wait_reason
                answer = httpx.post(f"{server.url}/_sandbox/orders/ABC-100000/approve")
                seen["approved"] = answer.json()["status"]

        run_until(settings, store, lambda: states(store) == {"invoiced": 1}, during=approve_once_waiting)
    assert states(store) == {"invoiced": 1}
    assert seen["approved"] == "waiting-ffmt-authorization"
    assert "VTEX holds the order in waiting-for-manual-authorization" in seen["reason"]
    assert store.find("ABC-100000").last_error_code is None  # type: ignore[union-attr]
