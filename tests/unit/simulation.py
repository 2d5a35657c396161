"""The step engine against the sandbox, in one process and on a fake clock: hours in milliseconds.

What the daemon does is reproduced without it: orders whose `next_run_at` has come are claimed
under a lease and stepped; when none is due, the clock jumps to the next one. The engine, the
client, the sandbox (through httpx's ASGI transport) and the account guard are the product's own;
only time is fake, and the store is the in-memory one (`orchestrator.store.memory`).
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from orchestrator.engine.policy import Policies
from orchestrator.engine.stepper import PERFORM, Perform, Stepper, StepperConfig
from orchestrator.intake.importer import build_order
from orchestrator.log import get_logger
from orchestrator.sandbox import Sandbox, SandboxConfig, SandboxOms, create_app
from orchestrator.store.memory import MemoryStore
from orchestrator.store.rows import OrderRow
from orchestrator.vtex.budget import Unlimited
from orchestrator.vtex.client import VtexClient
from orchestrator.vtex.pauses import AccountGuard
from states import TABLE, Table

START = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
LEASE = timedelta(minutes=2)


class Simulation:
    def __init__(
        self,
        *,
        grace: timedelta = timedelta(minutes=30),
        policies: Policies | None = None,
        sandbox_grace: timedelta | None = None,
        table: Table = TABLE,
        perform: Mapping[str, Perform] = PERFORM,
        **sandbox: Any,
    ) -> None:
        self.now = START
        self.grace = grace
        vtex_grace = (sandbox_grace or grace).total_seconds()
        self.sandbox = Sandbox(
            SandboxOms(SandboxConfig(grace_seconds=vtex_grace, **sandbox), clock=self._monotonic)
        )
        config = self.sandbox.oms.config
        self.client = VtexClient(
            "http://sandbox",
            app_key=config.app_key,
            app_token=config.app_token,
            transport=httpx.ASGITransport(app=create_app(self.sandbox)),
            budget=Unlimited(clock=self._monotonic, sleep=self._sleep),
        )
        self.store = MemoryStore()
        self.guard = AccountGuard("sandbox", timedelta(minutes=5), get_logger())
        self.policies = policies or Policies.for_grace(grace, max_attempts=8)
        self.stepper = Stepper(
            self.client,
            self.store,
            StepperConfig(
                grace_period=grace, worker_id="sim", policies=self.policies, table=table, perform=perform
            ),
            clock=self._clock,
            guard=self.guard,
            rng=random.Random(20260105),  # the retry jitter, repeatable
            on_invoice=lambda kind, value: self.invoices_taken.append((kind, value)),
        )
        self.invoices_taken: list[tuple[str, int]] = []  # what the metrics would count
        self.steps = 0

    # -- a fake clock for everything ----------------------------------------------------------------

    def _clock(self) -> datetime:
        return self.now

    def _monotonic(self) -> float:
        return self.now.timestamp()

    async def _sleep(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)

    def advance(self, by: timedelta) -> None:
        self.now += by

    # -- orders ---------------------------------------------------------------------------------------

    def add(self, record: dict[str, Any]) -> str:
        order = build_order(json.loads(json.dumps(record)))
        return self.store.insert(order, self.now).order_id

    def row(self, order_id: str) -> OrderRow:
        return self.store.find(order_id)

    def requests(self, order_id: str | None = None) -> list[dict[str, Any]]:
        log = list(self.sandbox.oms.ledger.request_log)
        return [entry for entry in log if order_id is None or entry["orderId"] == order_id]

    def operations(self, order_id: str) -> list[str]:
        return [entry["operation"] for entry in self.requests(order_id)]

    # -- the daemon's loop, on the fake clock ------------------------------------------------------------

    def run(
        self,
        until: Callable[[], bool] | None = None,
        *,
        within: timedelta = timedelta(hours=2),
        on_step: Callable[[Simulation], None] | None = None,
    ) -> None:
        """Step due orders, jumping the clock to the next due one, until `until()` holds, nothing
        is scheduled any more, or `within` has passed (simulated time)."""
        asyncio.run(self._run(until, self.now + within, on_step))

    async def _run(
        self,
        until: Callable[[], bool] | None,
        deadline: datetime,
        on_step: Callable[[Simulation], None] | None,
    ) -> None:
        while until is None or not until():
            if self.guard.is_paused(self.now):
                assert self.guard.pause_state is not None
                self.now = self.guard.pause_state.until
            due = self.store.due(self.now)
            if not due:
                upcoming = self.store.next_due_at()
                if upcoming is None or upcoming > deadline:
                    return
                self.now = max(self.now, upcoming)
                continue
            for row in due:
                claimed = self.store.claim(row.id, "sim", self.now, LEASE)
                if claimed is not None:
                    await self.stepper.step(claimed)
                    self.steps += 1
                    if on_step is not None:
                        on_step(self)
            if self.now > deadline:
                return
