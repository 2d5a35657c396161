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
from typing import Any

from orchestrator.config.account_tables import SINGLE_ACCOUNT_CREDENTIALS, AccountError, CredentialSource
from orchestrator.engine.stepper import Stepper
from orchestrator.redaction import register_secret
from orchestrator.vtex.client import VtexClient
from orchestrator.vtex.pauses import AccountGuard


@dataclass
class Lane:
    name: str  # the account's configured name, as in `orders.account`
    stepper: Stepper
    guard: AccountGuard
    client: VtexClient
    slots: int  # steps of this account that may be in flight at once
    log: Any
    credentials: CredentialSource = SINGLE_ACCOUNT_CREDENTIALS
    in_flight: set[int] = field(default_factory=set)  # order row ids
    _was_paused: bool = False

    @property
    def free(self) -> int:
        return self.slots - len(self.in_flight)

    def is_paused(self, now: datetime) -> bool:
        return self.guard.is_paused(now)

    def may_claim(self, now: datetime) -> bool:
        """Whether the lane's orders may be claimed now. Coming out of a pause (it ran out, or
        `resume` lifted it), the credential files are read again first: the order that goes
        next is the probe, and it must carry the credentials an operator just rotated."""
        paused = self.guard.is_paused(now)
        if self._was_paused and not paused:
            self.reload_credentials()
        self._was_paused = paused
        return not paused

    def reload_credentials(self) -> bool:
        """Read the account's credential files again (SIGHUP, the end of a pause); True when the
        client now sends new ones. Variables cannot change under a running process: nothing to do."""
        source = self.credentials
        if not source.rereadable:
            return False
        try:
            key, token = source.read()
        except AccountError as exc:  # the message names the table and the file, never a value
            self.log.error("cannot read the account's credentials again", account=self.name, error=str(exc))
            return False
        register_secret(key.get_secret_value())
        register_secret(token.get_secret_value())
        changed = self.client.use_credentials(key.get_secret_value(), token.get_secret_value())
        if changed:
            self.log.info("new credentials read; the next calls use them", account=self.name)
        return changed
