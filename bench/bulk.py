"""Realistic rows written straight into the database, for the scale measurements (a million orders
would take hours to drive through VTEX; what is measured here is the queries and the memory)."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from bench.harness import order_line
from orchestrator.store.tables import ORDERS

# A month of operation: almost everything invoiced, some work in flight, a few failed.
MIX = (
    ("invoiced", 0.93),
    ("canceled", 0.01),
    ("failed", 0.005),
    ("handling", 0.02),
    ("dispatch-authorized", 0.03),
    ("imported", 0.005),
)
CHUNK = 5000


def _states(count: int, rng: random.Random) -> Iterator[str]:
    names = [name for name, _ in MIX]
    weights = [weight for _, weight in MIX]
    for _ in range(count):
        yield rng.choices(names, weights)[0]


def rows(count: int, *, start: int = 0, state: str | None = None, seed: int = 1) -> Iterator[dict[str, Any]]:
    rng = random.Random(seed)
    now = datetime.now(UTC)
    states = _states(count, rng) if state is None else iter([state] * count)
    for n, chosen in zip(range(start, start + count), states, strict=False):
        record = json.loads(order_line(n))
        body, invoice = record["order"], record["invoice"]
        created = now - timedelta(minutes=rng.uniform(1, 60 * 24 * 30))
        changed = created + timedelta(minutes=rng.uniform(0, 30))
        active = chosen in ("handling", "dispatch-authorized", "imported")
        yield {
            "order_id": f"BCH-{body['marketplaceOrderId']}",
            "affiliate_id": "BCH",
            "marketplace_order_id": body["marketplaceOrderId"],
            "state": chosen,
            "failed_from": "imported" if chosen == "failed" else None,
            "place_body": body,
            "value": body["marketplacePaymentValue"],
            "invoice": invoice,
            "invoice_number": invoice["invoiceNumber"],
            "invoice_sent_at": changed if chosen in ("invoiced", "handling") else None,
            "attempts": 0,
            "last_error": "place-order: HTTP 400 [FMT007] Payment total differs"
            if chosen == "failed"
            else None,
            "last_error_code": "FMT007" if chosen == "failed" else None,
            "vtex_status": {"invoiced": "invoiced", "handling": "handling"}.get(chosen),
            "next_run_at": (now + timedelta(hours=1)) if active else None,
            "authorized_at": created if chosen not in ("imported", "failed") else None,
            "version": 1,
            "created_at": created,
            "updated_at": changed,
            "state_changed_at": changed,
        }


def insert(engine: sa.Engine, count: int, **kwargs: Any) -> None:
    batch: list[dict[str, Any]] = []
    with engine.begin() as conn:
        for row in rows(count, **kwargs):
            batch.append(row)
            if len(batch) == CHUNK:
                conn.execute(sa.insert(ORDERS), batch)
                batch = []
        if batch:
            conn.execute(sa.insert(ORDERS), batch)
