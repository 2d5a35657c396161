"""The console's orders page and its bulk actions.

The page is `orchestrator list` in a browser: the same filters (`web.order_query`, shared with the
API, so a URL means the same list everywhere), the same keyset pages, the same CSV. The filters
live in the URL: a list can be bookmarked, shared, and the back button returns to it.

A bulk action (retry or cancel) acts on the orders ticked on a page, or on everything the filter
matches. It always passes through a confirmation that says how many orders, of which accounts,
and how many of them the action cannot apply to in their state; what is done is then one change
per order (`ops.bulk`), each recorded in that order's history with who did it.
"""

from __future__ import annotations

import csv
import io
from collections import Counter
from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import QueryParams
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from orchestrator.clock import utcnow
from orchestrator.durations import format_duration
from orchestrator.errors import UsageError
from orchestrator.money import money
from orchestrator.ops import bulk, invoicing
from orchestrator.ops.views import SUMMARY_KEYS, order_summary
from orchestrator.store.rows import OrderRow
from orchestrator.web.auth import OPERATE
from orchestrator.web.console import Pages, posted, waiting_for
from orchestrator.web.http import caller_of
from orchestrator.web.order_query import OrderQuery, filter_items, listed, read_query
from states import State

CSV_PAGE = 1000


class OrdersPages(Pages):
    # -- the list --------------------------------------------------------------------------------

    async def orders(self, request: Request) -> Response:
        params = request.query_params
        query = read_query(params, self.settings)
        now = utcnow()
        if params.get("format") == "csv":
            return self._csv(query, now)
        rows, cursor = await run_in_threadpool(listed, self.store, query, now)
        total = (
            len(rows) if query.find else await run_in_threadpool(self.store.count_orders, now, query.where)
        )
        filters = filter_items(params)
        return self.console.page(
            request,
            "orders.html",
            title="Orders",
            rows=[self._row(row, now) for row in rows],
            total=total,
            first_page=bool(query.after),
            next_href=f"/orders?{urlencode([*filters, ('after', cursor)])}" if cursor else None,
            first_href=f"/orders?{urlencode(filters)}",
            csv_href=f"/orders?{urlencode([*filters, ('format', 'csv')])}",
            filters=filters,
            chosen=_chosen(params),
            states=[str(s) for s in State],
            accounts=list(self.settings.all_accounts),
            may_operate=caller_of(request).may(OPERATE),
        )

    def _row(self, row: OrderRow, now: datetime) -> dict[str, Any]:
        currency = self.console.currency(row.account)
        return {
            "order": row,
            "age": format_duration(now - row.state_changed_at),
            "value": money(row.target_value, currency),
            "invoices": invoicing.summary(row, currency),
            "code": row.last_error_code or "",
            "waiting": waiting_for(row),
        }

    def _csv(self, query: OrderQuery, now: datetime) -> Response:
        """Every order the filter matches (not only this page), as `list --csv` writes them,
        streamed page by page so that a large export holds one page in memory."""

        def lines() -> Iterator[str]:
            buffer = io.StringIO()
            writer = csv.DictWriter(buffer, fieldnames=SUMMARY_KEYS, lineterminator="\n")
            writer.writeheader()
            page = query.first_page()
            while True:
                rows, cursor = listed(self.store, replace(page, limit=CSV_PAGE), now)
                writer.writerows(order_summary(row, now) for row in rows)
                yield buffer.getvalue()
                buffer.seek(0)
                buffer.truncate()
                if cursor is None:
                    return
                page = replace(page, after=cursor)

        return StreamingResponse(
            lines(),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": 'attachment; filename="orders.csv"'},
        )

    # -- bulk actions ----------------------------------------------------------------------------

    async def _targets(self, params: QueryParams, refs: list[str]) -> list[OrderRow]:
        """The ticked orders, or (no tick, `scope=filter`) every order the filter matches."""
        if refs:
            return await run_in_threadpool(bulk.selected, self.store, refs)
        query = read_query(params, self.settings)
        return await run_in_threadpool(bulk.targets, self.store, utcnow(), query.where)

    async def bulk_confirm(self, request: Request) -> Response:
        params = request.query_params
        whole_filter = bool(params.get("all"))  # "Retry all…": the filter, whatever is ticked
        action = _action(params.get("all") or params.get("action"))
        refs = [] if whole_filter else params.getlist("ref")
        if not refs and not whole_filter:
            raise UsageError("tick the orders to act on, or choose every order the filter matches")
        rows = await self._targets(params, refs)
        refused = [(row.ref, why) for row in rows if (why := bulk.allowed(action, row)) is not None]
        accounts = Counter(row.account for row in rows)
        return self.console.page(
            request,
            "bulk_confirm.html",
            title=f"{action} {len(rows)} orders",
            action=action,
            count=len(rows),
            accounts=sorted(accounts.items()),
            refused=refused,
            refs=refs,
            filters=[] if refs else filter_items(params),
            back_href=f"/orders?{urlencode(filter_items(params))}",
        )

    async def bulk(self, request: Request) -> Response:
        form = await posted(request)
        action = _action(form.get("action"))
        refs = [r for r in form.getlist("ref") if r]
        if not refs and form.get("scope") != "filter":
            raise UsageError("tick the orders to act on, or choose every order the filter matches")
        rows = await self._targets(form, refs)
        caller = caller_of(request)
        reason = (form.get("reason") or "").strip() or f"canceled by {caller.name}"
        actor = f"{caller.actor} (bulk {action} of {len(rows)})"[:120]
        results = await bulk.apply_to_each(
            self.settings, self.store, self.console.clients, rows, action, actor=actor, reason=reason
        )
        self.console.log.info(
            "bulk action",
            action=action,
            orders=len(results),
            changed=sum(r.changed for r in results),
            refused=sum(r.refused for r in results),
            by=caller.name,
        )
        return self.console.page(
            request,
            "bulk_done.html",
            title=f"{action}: {len(results)} orders",
            action=action,
            results=results,
            changed=sum(r.changed for r in results),
            refused=sum(r.refused for r in results),
        )


def _action(value: str | None) -> str:
    if value not in bulk.ACTIONS:
        raise UsageError(f"action: {value!r} is not one of {', '.join(bulk.ACTIONS)}")
    return value


def _chosen(params: QueryParams) -> dict[str, Any]:
    """What the filter form shows as chosen (the URL's values, so a shared link fills it in)."""
    return {
        "states": set(params.getlist("state")),
        **{name: params.get(name) or "" for name in ("account", "affiliate", "olderThan", "code", "waiting")},
        "search": params.get("search") or params.get("find") or "",
        "sort": params.get("sort") or "-created",
        "partlyInvoiced": bool(params.get("partlyInvoiced")),
        "returned": bool(params.get("returned")),
    }
