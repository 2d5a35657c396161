"""Prometheus metrics and a health endpoint for the daemon (`orchestrator run --metrics-port P`).

    orchestrator_orders{state}                         orders per state (refreshed from the database)
    orchestrator_oldest_active_order_age_seconds       age of the oldest order not yet final
    orchestrator_transitions_total{trigger,from,to}    state machine transitions made by this daemon
    orchestrator_invoices_total{type}                  invoices VTEX took from this daemon (Output, Input)
    orchestrator_invoiced_cents_total{type}            their value in cents (Input: returns)
    orchestrator_step_failures_total{state}            orders this daemon put in `failed`, by the state
    orchestrator_vtex_request_seconds{operation,status}  VTEX latency (status "error": no answer)
    orchestrator_vtex_rate_limited_total               429 answers received
    orchestrator_steps_in_flight                       steps running right now
    orchestrator_last_tick_timestamp_seconds           when the scheduler last ticked
    orchestrator_account_paused                        1 while the account's calls are held (bad
                                                       credentials, not VTEX, or a 429 pause)
    orchestrator_account_throttled_seconds             seconds left of VTEX's last 429 pause
    orchestrator_account_recovery_phase                after 429s: 0 normal, 1 paused, 2 probing (one
                                                       request first), 3 ramping back to the budget
    orchestrator_account_ramp_requests_per_second      what the ramp allows now (0 when not ramping)
    orchestrator_orders_canceled_in_vtex_total         orders VTEX canceled without us asking
    orchestrator_feed_read_age_seconds                 since a daemon last read the account's Orders
                                                       Feed (accounts that listen to it)
    orchestrator_feed_last_event_age_seconds           since the feed last handed out an item
    orchestrator_feed_unreadable                       1 while the feed cannot be read (its orders
                                                       are polled meanwhile)
    orchestrator_account_missing_permissions           License Manager resources VTEX refused the
                                                       account's calls for (403): those calls wait
    orchestrator_stuck_orders{reason}                  stuck orders by reason
    orchestrator_build_info{version,python}            always 1: which build runs

`/healthz` (liveness) and `/readyz` (readiness) are described in
`orchestrator.engine.monitor.health`; all three are served by the bounded
`orchestrator.engine.monitor.probe_server`.
"""

from __future__ import annotations

import json
import platform
from datetime import datetime
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from orchestrator import __version__
from orchestrator.config.account_tables import DEFAULT_ACCOUNT
from orchestrator.engine.monitor.health import Health
from orchestrator.engine.monitor.probe_server import Answer, Handler
from orchestrator.vtex.client import Call
from orchestrator.vtex.errors import VtexError
from states import ORDERED_STATES

LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
RECOVERY_PHASES = ("normal", "paused", "probing", "ramping")  # the values of the recovery phase gauge


class Metrics:
    """The daemon's metrics. With several accounts configured, everything that is an account's
    (orders, transitions, VTEX calls, 429s, pauses) carries an `account` label; a single-account
    set-up keeps the label sets it always had, so its dashboards and alerts stay as they are."""

    def __init__(self, accounts: bool = False) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.by_account = accounts
        a = ["account"] if accounts else []
        self.orders = Gauge("orchestrator_orders", "Orders per state.", [*a, "state"], registry=r)
        self.oldest_active_age = Gauge(
            "orchestrator_oldest_active_order_age_seconds",
            "Age of the oldest order not yet final.",
            registry=r,
        )
        self.transitions = Counter(
            "orchestrator_transitions",
            "State transitions made.",
            [*a, "trigger", "from_state", "to_state"],
            registry=r,
        )
        self.failures = Counter(
            "orchestrator_step_failures",
            "Orders put in failed, by the state they failed in.",
            [*a, "state"],
            registry=r,
        )
        self.vtex_latency = Histogram(
            "orchestrator_vtex_request_seconds",
            "VTEX request latency by operation and HTTP status.",
            [*a, "operation", "status"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.rate_limited = Counter("orchestrator_vtex_rate_limited", "429 answers from VTEX.", a, registry=r)
        self.invoices = Counter(
            "orchestrator_invoices",
            "Invoices VTEX took from this daemon, by type: Output (sales, partial ones included) and "
            "Input (returns).",
            [*a, "type"],
            registry=r,
        )
        self.invoiced_cents = Counter(
            "orchestrator_invoiced_cents",
            "The value of the invoices VTEX took from this daemon, in cents, by type (Input: returned).",
            [*a, "type"],
            registry=r,
        )
        self.in_flight = Gauge("orchestrator_steps_in_flight", "Steps running now.", registry=r)
        self.last_tick = Gauge(
            "orchestrator_last_tick_timestamp_seconds",
            "When the scheduler last ticked (Unix time).",
            registry=r,
        )
        self.account_paused = Gauge(
            "orchestrator_account_paused",
            "1 while the account's calls are held: rejected credentials, an endpoint that is not VTEX, "
            "or a 429 pause.",
            a,
            registry=r,
        )
        self.account_throttled = Gauge(
            "orchestrator_account_throttled_seconds",
            "Seconds left of the pause VTEX's last 429 imposed (0 when none).",
            a,
            registry=r,
        )
        self.recovery_phase = Gauge(
            "orchestrator_account_recovery_phase",
            "Recovery after 429s: 0 normal, 1 paused, 2 probing (one request goes first), 3 ramping.",
            a,
            registry=r,
        )
        self.ramp_rate = Gauge(
            "orchestrator_account_ramp_requests_per_second",
            "Requests per second the ramp after a 429 pause allows now (0 when not ramping).",
            a,
            registry=r,
        )
        self.canceled_in_vtex = Counter(
            "orchestrator_orders_canceled_in_vtex",
            "Orders VTEX reported canceled without this orchestrator asking (VTEX Admin, the customer).",
            a,
            registry=r,
        )
        self.feed_read_age = Gauge(
            "orchestrator_feed_read_age_seconds",
            "Seconds since a daemon last read the account's Orders Feed (accounts that listen to it).",
            a,
            registry=r,
        )
        self.feed_event_age = Gauge(
            "orchestrator_feed_last_event_age_seconds",
            "Seconds since the account's Orders Feed last handed out an item.",
            a,
            registry=r,
        )
        self.feed_unreadable = Gauge(
            "orchestrator_feed_unreadable",
            "1 while the account's Orders Feed cannot be read (its orders are polled meanwhile).",
            a,
            registry=r,
        )
        self.missing_permissions = Gauge(
            "orchestrator_account_missing_permissions",
            "License Manager resources VTEX refused the account's calls for (403): those calls wait.",
            a,
            registry=r,
        )
        self.stuck = Gauge(
            "orchestrator_stuck_orders",
            "Stuck orders by reason: failed, slow-<state>, open-intent, needs-attention.",
            ["reason"],
            registry=r,
        )
        self.build_info = Gauge(
            "orchestrator_build_info",
            "Always 1; the labels say which build runs.",
            ["version", "python"],
            registry=r,
        )
        self.build_info.labels(__version__, platform.python_version()).set(1)

    # -- fed by the client and the engine ------------------------------------------------------

    def _of(self, account: str) -> tuple[str, ...]:
        return (account,) if self.by_account else ()

    def _one(self, metric: Any, account: str) -> Any:
        """`metric`'s series for `account` (the metric itself when there is no account label)."""
        return metric.labels(account) if self.by_account else metric

    def observe_call(self, call: Call, error: VtexError | None, account: str = DEFAULT_ACCOUNT) -> None:
        a = self._of(account)
        status = str(call.http_status) if call.http_status is not None else "error"
        self.vtex_latency.labels(*a, call.operation, status).observe(call.duration_ms / 1000)
        if call.http_status == 429:
            self._one(self.rate_limited, account).inc()

    def observe_transition(
        self, trigger: str, source: str, dest: str, account: str = DEFAULT_ACCOUNT
    ) -> None:
        a = self._of(account)
        self.transitions.labels(*a, trigger, source, dest).inc()
        if trigger == "fail":
            self.failures.labels(*a, source).inc()
        elif trigger == "notice_canceled":
            self._one(self.canceled_in_vtex, account).inc()

    def observe_invoice(self, kind: str, value: int, account: str = DEFAULT_ACCOUNT) -> None:
        a = self._of(account)
        self.invoices.labels(*a, kind).inc()
        self.invoiced_cents.labels(*a, kind).inc(value)

    # -- refreshed by the daemon ----------------------------------------------------------------

    def refresh_stuck(self, counts: dict[str, int]) -> None:
        for reason, count in counts.items():
            self.stuck.labels(reason).set(count)

    def refresh_account(
        self,
        account: str,
        paused: bool,
        throttled_for: float,
        phase: str = "normal",
        ramp: float | None = None,
    ) -> None:
        self._one(self.account_throttled, account).set(throttled_for)
        self._one(self.account_paused, account).set(1 if paused or throttled_for > 0 else 0)
        self._one(self.recovery_phase, account).set(RECOVERY_PHASES.index(phase))
        self._one(self.ramp_rate, account).set(ramp or 0.0)

    def refresh_permissions(self, account: str, missing: int) -> None:
        self._one(self.missing_permissions, account).set(missing)

    def refresh_feed(self, account: str, read_age: float, event_age: float | None, unreadable: bool) -> None:
        self._one(self.feed_read_age, account).set(read_age)
        self._one(self.feed_event_age, account).set(event_age if event_age is not None else 0.0)
        self._one(self.feed_unreadable, account).set(1 if unreadable else 0)

    def refresh_orders(
        self, counts: dict[str, dict[str, int]], oldest_active: datetime | None, now: datetime
    ) -> None:
        """`counts`: orders per account and state."""
        if not self.by_account:
            total: dict[str, int] = {}
            for by_state in counts.values():
                for state, n in by_state.items():
                    total[state] = total.get(state, 0) + n
            counts = {"": total}
        for account, by_state in counts.items():
            a = self._of(account)
            for state in (*(str(s) for s in ORDERED_STATES), *by_state):
                self.orders.labels(*a, state).set(by_state.get(state, 0))
        self.oldest_active_age.set((now - oldest_active).total_seconds() if oldest_active else 0.0)


def probe_handler(metrics: Metrics, health: Health) -> Handler:
    """What the daemon's probe server answers: the metrics, liveness and readiness."""
    json_type = "application/json"

    def answer(path: str) -> Answer:
        if path == "/metrics":
            return Answer(200, CONTENT_TYPE_LATEST, generate_latest(metrics.registry))
        if path in ("/healthz", "/readyz"):
            ok, body = health.liveness() if path == "/healthz" else health.readiness()
            return Answer(200 if ok else 503, json_type, json.dumps(body).encode())
        return Answer(404, json_type, b'{"error": "not found: /metrics, /healthz and /readyz are served"}')

    return answer
