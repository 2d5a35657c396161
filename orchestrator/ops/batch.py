"""Many operator changes as one (`track --file`, `invoice --file`): every line is checked against
its order as it is now, then all are written in one transaction, or none is.

Checking lines one by one and writing as they passed had sent two tracking updates before the
third line was refused, and a re-run then reported them as "0 already sent". Here a refusal of
any line changes nothing; a `--dry-run` stops after the check and says what would be done.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from orchestrator.clock import utcnow
from orchestrator.errors import OperationError
from orchestrator.ops.operations import BUSY_WAIT_SECONDS, AskVtexFirst, Change
from orchestrator.store.events import Event
from orchestrator.store.store import Store


@dataclass(frozen=True)
class Line:
    number: int
    order_id: str
    change: Change


@dataclass(frozen=True)
class Planned:
    line: int
    order_id: str
    changed: bool
    message: str


class BatchRefused(OperationError):
    """Some lines cannot be applied; nothing was changed."""

    def __init__(self, problems: list[str], what: str) -> None:
        self.problems = problems
        super().__init__(f"nothing {what}:\n" + "\n".join(problems))


class OpenIntents(OperationError):
    """Some orders need VTEX asked first (a VTEX call of unknown outcome that a line would change,
    a value VTEX may hold differently): one step of each, then the lines again."""

    def __init__(self, intents: list[AskVtexFirst]) -> None:
        self.intents = intents
        self.order_ids = [i.ref for i in intents]
        super().__init__(", ".join(self.order_ids))

    def refusal(self) -> str:
        return "\n".join(i.refusal() for i in self.intents)


def apply_all(
    store: Store,
    lines: Sequence[Line],
    *,
    what: str,
    dry_run: bool = False,
    clock: Callable[[], datetime] = utcnow,
) -> list[Planned]:
    """Check every line, then write them all at once (unless `dry_run`); retries while a worker
    holds one of the orders, for a few seconds."""
    deadline = time.monotonic() + BUSY_WAIT_SECONDS
    while True:
        now = clock()
        planned: list[Planned] = []
        writes: list[tuple[str, dict[str, Any], list[Event], int]] = []
        problems: list[str] = []
        open_intents: list[AskVtexFirst] = []
        for line in lines:
            try:
                row = store.find(line.order_id)
            except OperationError as exc:  # an id several accounts hold
                problems.append(f"line {line.number}: orderId: {exc}")
                continue
            if row is None:
                problems.append(f"line {line.number}: orderId: no order {line.order_id!r}")
                continue
            try:
                result = line.change(row, now)
            except AskVtexFirst as intent:
                open_intents.append(intent)
                continue
            except OperationError as exc:
                problems.append(f"line {line.number}: {line.order_id}: {exc}")
                continue
            if isinstance(result, tuple):
                values, events, message = result
                writes.append((row.ref, values, events, row.version))
                planned.append(Planned(line.number, line.order_id, True, message))
            else:
                planned.append(Planned(line.number, line.order_id, False, result.message))
        if problems:
            raise BatchRefused(problems, what)
        if open_intents:
            raise OpenIntents(open_intents)
        if dry_run or not writes or store.update_unleased_many(writes, now):
            return planned
        if time.monotonic() > deadline:
            raise OperationError(f"nothing {what}: some of these orders are being worked on; try again")
        time.sleep(0.2)
