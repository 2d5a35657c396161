"""What the store's reports give: a count per state, and the thresholds stuck orders are
found by."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol


@dataclass(frozen=True)
class StateCount:
    state: str
    count: int
    oldest_since: datetime | None


class StuckThresholds(Protocol):
    """What the stuck query needs of the rules (`orchestrator.config.stuck_rules.StuckRules`)."""

    @property
    def thresholds(self) -> Mapping[str, timedelta]: ...

    @property
    def open_intent_after(self) -> timedelta: ...
