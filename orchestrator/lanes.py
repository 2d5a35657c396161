"""One account's share of a daemon: its own VTEX client (credentials, budget), its own pause and
its own slots for steps in flight.

With several accounts in one daemon, anything shared would let one account's trouble reach the
others: steps waiting for a 429-paused budget would hold the slots another account's orders need,
and one account's due orders could fill every claim. So each account gets a lane, the daemon
claims for each lane separately (only while it is not paused, only as many as its free slots,
starting with a different lane each time), and a lane's step runs with its own stepper.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from orchestrator.step import Stepper
from orchestrator.vtex.account import AccountGuard
from orchestrator.vtex.client import VtexClient


@dataclass
class Lane:
    name: str  # the account's configured name, as in `orders.account`
    stepper: Stepper
    guard: AccountGuard
    client: VtexClient
    slots: int  # steps of this account that may be in flight at once
    in_flight: set[int] = field(default_factory=set)  # order row ids

    @property
    def free(self) -> int:
        return self.slots - len(self.in_flight)

    def is_paused(self, now: datetime) -> bool:
        return self.guard.is_paused(now)
