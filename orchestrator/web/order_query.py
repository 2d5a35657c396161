"""A listing's filters, sort and page as a URL's query: one reading for the API's `GET
/api/orders` and the console's orders page, so that a link copied from one filters the other the
same way, and a filter shared as a URL is the list the sender saw.

Every parameter that does not parse is refused naming it (a typo must not read as "no orders").
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, TypeVar

from starlette.datastructures import QueryParams

from orchestrator.config.settings import Settings
from orchestrator.durations import parse_duration
from orchestrator.errors import UsageError
from orchestrator.store.listing import OrderFilter, parse_sort, parse_states
from orchestrator.store.rows import OrderRow
from orchestrator.store.store import Store

T = TypeVar("T")
MAX_PAGE = 1000
# The filters as query parameters, in the order the orders page shows them. `find` is the exact
# lookup by any id (`show`'s); `search` the partial one (ids, invoice numbers, customer name).
FILTER_PARAMS = ("state", "account", "affiliate", "olderThan", "code", "waiting", "search", "find")
FLAGS = ("partlyInvoiced", "returned")


@dataclass(frozen=True)
class OrderQuery:
    where: OrderFilter
    sort: str
    descending: bool
    limit: int
    after: str | None
    find: str | None  # an exact id: looked up, not listed

    def first_page(self) -> OrderQuery:
        return replace(self, after=None)


def read_query(
    params: QueryParams, settings: Settings, *, default_limit: int = 50, default_sort: str = "-created"
) -> OrderQuery:
    """The listing a URL asks for (UsageError, a 400, naming the parameter that does not parse)."""
    sort, descending = param("sort", parse_sort, params.get("sort") or default_sort)
    older = params.get("olderThan")
    account = account_param(params.get("account") or None, settings)  # a form's "every account" is ""
    where = OrderFilter(
        param("state", parse_states, params.getlist("state")),
        params.get("affiliate") or None,
        param("olderThan", parse_duration, older) if older else None,
        params.get("code") or None,
        params.get("waiting") or None,
        account,
        partly_invoiced=params.get("partlyInvoiced") in ("1", "true", "on"),
        returned=params.get("returned") in ("1", "true", "on"),
        text=(params.get("search") or "").strip() or None,
    )
    limit = param("limit", page_size, params.get("limit") or str(default_limit))
    return OrderQuery(where, sort, descending, limit, params.get("after") or None, params.get("find") or None)


def account_param(account: str | None, settings: Settings) -> str | None:
    """`?account=`, which must name a configured account: an unknown one would show nothing, as
    if it had no orders (UsageError, a 400, naming the parameter)."""
    if account is not None and account not in settings.all_accounts:
        raise UsageError(f"account: no account {account!r} is configured")
    return account


def filter_items(params: Mapping[str, Any] | QueryParams) -> list[tuple[str, str]]:
    """The filters, sort and page size of `params` (not the page's cursor), as (name, value)
    pairs: for the next page's link, the CSV link and the bulk actions, which must act on the very
    filter shown."""
    items: list[tuple[str, str]] = []
    multi = params.multi_items() if isinstance(params, QueryParams) else list(params.items())
    for name, value in multi:
        if (name in FILTER_PARAMS or name in FLAGS or name in ("sort", "limit")) and value:
            items.append((name, str(value)))
    return items


def param(name: str, parse: Callable[[Any], T], value: Any) -> T:
    """`parse(value)`; a refusal (400) names the query parameter."""
    try:
        return parse(value)
    except ValueError as exc:
        raise UsageError(f"{name}: {exc}") from None


def page_size(text: str) -> int:
    text = text.strip()
    if not (text.isascii() and text.isdigit() and 1 <= int(text) <= MAX_PAGE):
        raise ValueError(f"a whole number between 1 and {MAX_PAGE}")
    return int(text)


def listed(store: Store, query: OrderQuery, now: datetime) -> tuple[list[OrderRow], str | None]:
    """The page of orders `query` asks for, and the cursor of the next one (None on the last). An
    exact id (`find`) is looked up by any id, then filtered."""
    if query.find:
        found = store.find_any(query.find, query.limit)
        return [r for r in found if query.where.matches(r, now)], None
    page = store.list_orders(
        now, query.where, sort=query.sort, descending=query.descending, limit=query.limit, after=query.after
    )  # a cursor that does not parse is a 400 (CursorError)
    return page.rows, page.next_cursor
