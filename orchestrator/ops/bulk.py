"""One operator action on many orders (the console's bulk retry and cancel): a selection or a
whole filter.

Unlike `ops.batch` (a file of changes: all or nothing), each order here is its own change: a
bulk retry of 50 failed orders where 3 were retried by someone else a second ago retries the 47
and says, per order, why the 3 were not. Each change is the same one `retry`/`cancel` make, with
the actor, so every order's history records who did it and that it came in a bulk action.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from orchestrator.config.settings import Settings
from orchestrator.engine.clients import AccountClients
from orchestrator.errors import OrchestratorError
from orchestrator.ops.operations import Change, cancel_change, retry_change
from orchestrator.ops.reconcile_first import reconciling_first
from orchestrator.store.listing import OrderFilter
from orchestrator.store.rows import OrderRow
from orchestrator.store.store import Store
from states import operator_actions

BULK_LIMIT = 10_000  # orders one bulk action may touch: past this, narrow the filter
ACTIONS = ("retry", "cancel")


class TooMany(OrchestratorError):
    serve_status = 400

    def __init__(self) -> None:
        super().__init__(
            f"more than {BULK_LIMIT} orders match; narrow the filter (a bulk action names every order it "
            "touches)"
        )


@dataclass(frozen=True)
class Result:
    ref: str
    account: str
    changed: bool
    refused: bool
    message: str


def targets(store: Store, now: datetime, where: OrderFilter) -> list[OrderRow]:
    """Every order the filter matches, oldest first, walking the listing's keyset pages."""
    rows: list[OrderRow] = []
    after: str | None = None
    while True:
        page = store.list_orders(now, where, sort="created", descending=False, limit=1000, after=after)
        rows.extend(page.rows)
        if len(rows) > BULK_LIMIT:
            raise TooMany()
        if page.next_cursor is None:
            return rows
        after = page.next_cursor


def selected(store: Store, refs: Sequence[str]) -> list[OrderRow]:
    """The orders ticked on a page, by the references the page printed (each looked up again: the
    order may have changed since the page was drawn)."""
    if len(refs) > BULK_LIMIT:
        raise TooMany()
    return [store.the_order(ref) for ref in dict.fromkeys(refs)]


def allowed(action: str, row: OrderRow) -> str | None:
    """Why `action` cannot be done to the order as it is now (None: it can). The state machine's
    own answer, so the confirmation can count the orders that will be refused before anything is
    done; the change itself checks again."""
    if action in operator_actions(row.state) or (action == "retry" and row.needs_attention):
        return None
    if action == "cancel" and row.state == "canceled":
        return None  # already canceled: a no-op, said as such
    return f"{row.state}: {action} is not possible in this state"


def change_for(action: str, row: OrderRow, settings: Settings, reason: str) -> Change:
    if action == "retry":
        return retry_change(row.ref, settings)
    return cancel_change(row.ref, reason)


async def apply_to_each(
    settings: Settings,
    store: Store,
    clients: AccountClients,
    rows: Sequence[OrderRow],
    action: str,
    *,
    actor: str,
    reason: str,
    on_result: Callable[[Result], None] | None = None,
) -> list[Result]:
    """`action` on each order, one change each (reconciled with VTEX first when an open intent
    needs it); a refusal is that order's result, never the end of the others."""
    results: list[Result] = []
    for row in rows:
        try:
            outcome = await reconciling_first(
                settings, store, clients, row.ref, change_for(action, row, settings, reason), actor=actor
            )
            result = Result(row.ref, row.account, outcome.changed, False, outcome.message)
        except OrchestratorError as exc:
            result = Result(row.ref, row.account, False, True, str(exc))
        results.append(result)
        if on_result is not None:
            on_result(result)
    return results
