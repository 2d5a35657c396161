"""Metrics per account: with several accounts every account's series carries an `account` label;
a single-account set-up keeps the label sets its dashboards and alerts were written for."""

from __future__ import annotations

from datetime import UTC, datetime

from prometheus_client import generate_latest

from orchestrator.engine.monitor.metrics import Metrics
from orchestrator.vtex.client import Call

NOW = datetime(2026, 12, 5, tzinfo=UTC)


def scrape(metrics: Metrics) -> str:
    return generate_latest(metrics.registry).decode()


def test_several_accounts_label_every_account_series() -> None:
    """With several accounts every per-account series carries the account label."""
    metrics = Metrics(accounts=True)
    metrics.refresh_orders({"acme-br": {"invoiced": 3}, "acme-ar": {"imported": 2}}, None, NOW)
    metrics.observe_call(Call("place-order", "ABC-1", 429, 12.0), None, "acme-ar")
    metrics.observe_transition("complete", "handling", "invoiced", "acme-br")
    metrics.refresh_account("acme-ar", paused=True, throttled_for=0.0)
    text = scrape(metrics)
    assert 'orchestrator_orders{account="acme-br",state="invoiced"} 3.0' in text
    assert 'orchestrator_orders{account="acme-ar",state="imported"} 2.0' in text
    assert 'orchestrator_vtex_rate_limited_total{account="acme-ar"} 1.0' in text
    assert 'account="acme-ar",operation="place-order",status="429"' in text
    assert 'orchestrator_transitions_total{account="acme-br",from_state="handling"' in text
    assert 'orchestrator_account_paused{account="acme-ar"} 1.0' in text


def test_one_account_keeps_its_label_sets() -> None:
    """With one account the series keep the label sets dashboards were built on (no account label)."""
    metrics = Metrics()
    metrics.refresh_orders({"default": {"invoiced": 3}}, None, NOW)
    metrics.observe_call(Call("place-order", "ABC-1", 200, 12.0), None)
    metrics.refresh_account("default", paused=False, throttled_for=0.0)
    text = scrape(metrics)
    assert 'orchestrator_orders{state="invoiced"} 3.0' in text
    assert 'orchestrator_vtex_request_seconds_count{operation="place-order",status="200"} 1.0' in text
    assert "orchestrator_account_paused 0.0" in text
    assert 'account="' not in text


def test_invoices_and_returns_are_counted_with_their_value_per_account() -> None:
    """What the engine reports VTEX took: invoices and returns by type, in number and cents."""
    metrics = Metrics(accounts=True)
    for kind, value in (("Output", 900), ("Output", 800), ("Input", 900)):
        metrics.observe_invoice(kind, value, "acme-br")
    text = scrape(metrics)
    assert 'orchestrator_invoices_total{account="acme-br",type="Output"} 2.0' in text
    assert 'orchestrator_invoiced_cents_total{account="acme-br",type="Output"} 1700.0' in text
    assert 'orchestrator_invoices_total{account="acme-br",type="Input"} 1.0' in text
    assert 'orchestrator_invoiced_cents_total{account="acme-br",type="Input"} 900.0' in text
