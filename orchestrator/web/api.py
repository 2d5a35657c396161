"""The API's routes, each the CLI's function behind an HTTP shape: intake, late data, reads and
operations. Answers: 201 something new was stored, 200 nothing new (an idempotent re-post) or a
read, 202 accepted for the daemon to finish, 404 no such order, 409 refused for that order now,
413 body too large, 422 invalid (problems with index, field and message), 400 malformed."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from orchestrator.clock import utcnow
from orchestrator.web.auth import OPERATE, PUSH, READ, Caller
from orchestrator.web.bodies import BodyError, json_body, order_lines, read_body
from orchestrator.web.refs import order_ref

if TYPE_CHECKING:
    from orchestrator.config.settings import Settings
    from orchestrator.store.store import Store
    from orchestrator.web.app import Endpoint

T = TypeVar("T")


class NotFound(Exception):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _done(order_id: str, outcome: Any, status: int = 200) -> Response:
    body = {"orderId": order_id, "changed": outcome.changed, "message": outcome.message}
    return JSONResponse(body, status_code=status)


class Served(Protocol):
    """What the routes need of the server they belong to (the API, or the console's docs page)."""

    settings: Settings
    store: Store


class Routes:
    def __init__(self, api: Served) -> None:
        self.store = api.store
        self.settings = api.settings

    def table(self) -> list[Endpoint]:
        from orchestrator.web.app import Endpoint

        return [
            Endpoint(
                "POST",
                "/api/orders",
                PUSH,
                "push orders: a record, an array, or JSON Lines",
                self.post_orders,
            ),
            Endpoint("GET", "/api/orders", READ, "list orders", self.list_orders),
            Endpoint("GET", "/api/orders/{order_id}", READ, "one order and its history", self.get_order),
            Endpoint("POST", "/api/orders/{order_id}/invoice", PUSH, "attach the invoice", self.post_invoice),
            Endpoint(
                "POST",
                "/api/orders/{order_id}/tracking",
                PUSH,
                "attach a tracking number",
                self.post_tracking,
            ),
            Endpoint("POST", "/api/orders/{order_id}/retry", OPERATE, "retry a failed order", self.retry),
            Endpoint("POST", "/api/orders/{order_id}/cancel", OPERATE, "cancel an order", self.cancel),
            Endpoint("GET", "/api/status", READ, "counts, pauses, daemons and stuck orders", self.status),
        ]

    async def _order(self, request: Request) -> Any:
        ref = order_ref(request)
        row = await run_in_threadpool(self.store.find, ref)
        if row is None:
            raise NotFound(ref)
        return row

    # -- intake and late data --------------------------------------------------------------------

    async def post_orders(self, request: Request, caller: Caller) -> Response:
        from orchestrator.intake.importer import import_lines
        from orchestrator.web.app import error

        lines = order_lines(await read_body(request), request.headers.get("content-type", ""))
        replace = request.query_params.get("replace") in ("1", "true")
        work = partial(
            import_lines,
            lines,
            self.store,
            utcnow(),
            worker=caller.actor,
            replace=replace,
            accounts=list(self.settings.all_accounts),
        )
        report = await run_in_threadpool(work)
        if report.problems:
            problems = [
                {"index": p.line - 1, "field": p.field, "message": p.message} for p in report.problems
            ]
            what = "in conflict with stored orders" if report.conflict else "invalid"
            records = len({p.line for p in report.problems})
            message = (
                f"nothing stored: {records} of {report.lines} record(s) {what} "
                f"({report.problems_total} problem(s))"
            )
            return error(409 if report.conflict else 422, message, problems=problems)
        if report.empty:
            return error(422, "the body holds no orders")
        body = {
            "imported": report.imported,
            "replaced": [{"orderId": r.order_id, "was": r.was} for r in report.replaced],
            "alreadyPresent": report.already_present,
        }
        return JSONResponse(body, status_code=201 if report.imported or report.replaced else 200)

    async def post_invoice(self, request: Request, caller: Caller) -> Response:
        from orchestrator.intake.validation import validate_invoice
        from orchestrator.ops.operations import attach_invoice

        row = await self._order(request)
        body = await self._object(request, "invoice")
        problems = [{"field": f, "message": m} for f, m in validate_invoice(body, row.value)]
        return await self._late(
            row, problems, partial(attach_invoice, self.store, row.ref, body, caller.actor)
        )

    async def post_tracking(self, request: Request, caller: Caller) -> Response:
        from orchestrator.ops.operations import attach_tracking, tracking_problems

        row = await self._order(request)
        body = await self._object(request, "tracking")
        problems = []
        for problem in tracking_problems(body):
            name, _, message = problem.partition(": ")
            problems.append({"field": name, "message": message})
        return await self._late(
            row, problems, partial(attach_tracking, self.store, row.ref, body, caller.actor)
        )

    @staticmethod
    async def _object(request: Request, what: str) -> dict[str, Any]:
        body = json_body(await read_body(request, 1024 * 1024))
        if not isinstance(body, dict):
            raise BodyError(422, f"the body must be one JSON object (the {what})")
        return body

    async def _late(self, row: Any, problems: list[dict[str, str]], operation: Any) -> Response:
        from orchestrator.ops.reconcile_first import reconciling_first
        from orchestrator.web.app import error

        if problems:
            return error(422, "invalid", problems=problems)
        outcome = await run_in_threadpool(reconciling_first, self.settings, self.store, row.ref, operation)
        return _done(row.order_id, outcome, 201 if outcome.changed else 200)

    # -- reads -----------------------------------------------------------------------------------

    async def list_orders(self, request: Request, _caller: Caller) -> Response:
        from orchestrator.durations import parse_duration
        from orchestrator.ops.views import order_summary
        from orchestrator.store.listing import CursorError, OrderFilter, parse_sort, parse_states
        from orchestrator.web.app import error

        q = request.query_params
        try:
            sort, descending = _param("sort", parse_sort, q.get("sort", "-created"))
            older = _param("olderThan", parse_duration, q["olderThan"]) if q.get("olderThan") else None
            limit = _param("limit", _limit, q.get("limit", "50"))
            states = _param("state", parse_states, q.getlist("state"))
            account = self._account_filter(request)
        except ValueError as exc:
            return error(400, str(exc))
        where = OrderFilter(states, q.get("affiliate"), older, q.get("code"), q.get("waiting"), account)
        now = utcnow()
        if q.get("find"):
            found = await run_in_threadpool(self.store.find_any, q["find"], limit)
            rows, cursor = [r for r in found if where.matches(r, now)], None
        else:
            listing = partial(
                self.store.list_orders, now, where, sort=sort, descending=descending, limit=limit
            )
            try:
                page = await run_in_threadpool(partial(listing, after=q.get("after")))
            except CursorError as exc:
                return error(400, str(exc))
            rows, cursor = page.rows, page.next_cursor
        return JSONResponse({"orders": [order_summary(r, now) for r in rows], "nextCursor": cursor})

    async def get_order(self, request: Request, _caller: Caller) -> Response:
        from orchestrator.ops.views import event_json, order_json
        from orchestrator.web.app import error

        key = order_ref(request)
        found = await run_in_threadpool(self.store.find_any, key)
        if len(found) > 1:
            return error(409, f"{len(found)} orders match {key!r}", matches=[r.ref for r in found])
        if not found:
            raise NotFound(key)
        row = found[0]
        events = await run_in_threadpool(self.store.events, row.id)
        data: dict[str, Any] = {"order": order_json(row), "events": [event_json(e) for e in events]}
        if request.query_params.get("vtex") in ("1", "true"):
            data.update(await self._vtex_view(row.account, row.order_id))
        return JSONResponse(data)

    async def _vtex_view(self, account: str, order_id: str) -> dict[str, Any]:
        from orchestrator.ops.check import vtex_view

        view = await vtex_view(self.settings.account(account), self.store, order_id)
        return {"vtex": view.order, "vtexError": view.error}

    def _account_filter(self, request: Request) -> str | None:
        """`?account=`, which must name a configured account (an unknown one would list nothing,
        as if it had no orders)."""
        account = request.query_params.get("account")
        if account is not None and account not in self.settings.all_accounts:
            raise ValueError(f"account: no account {account!r} is configured")
        return account

    async def status(self, request: Request, _caller: Caller) -> Response:
        from orchestrator.ops.status import report
        from orchestrator.web.app import error

        try:
            account = self._account_filter(request)
        except ValueError as exc:
            return error(400, str(exc))
        now = utcnow()
        data = await run_in_threadpool(
            partial(report, accounts=self.settings.account_graces, account=account),
            self.store,
            now,
            self.settings.stuck_rules,
            self.settings.grace_period,
        )
        return JSONResponse(data)

    # -- operations ------------------------------------------------------------------------------

    async def retry(self, request: Request, caller: Caller) -> Response:
        from orchestrator.ops.operations import retry as retry_order
        from orchestrator.ops.reconcile_first import reconciling_first

        row = await self._order(request)
        operation = partial(retry_order, self.store, row.ref, self.settings, caller.actor)
        outcome = await run_in_threadpool(reconciling_first, self.settings, self.store, row.ref, operation)
        return _done(row.order_id, outcome)

    async def cancel(self, request: Request, caller: Caller) -> Response:
        from orchestrator.ops.operations import request_cancel

        row = await self._order(request)
        raw = await read_body(request, 64 * 1024)
        body = json_body(raw) if raw.strip() else {}
        given = body.get("reason") if isinstance(body, dict) else None
        reason = (
            given
            if isinstance(given, str) and given.strip()
            else f"canceled through the API by {caller.name}"
        )
        outcome = await run_in_threadpool(request_cancel, self.store, row.ref, reason, caller.actor)
        return _done(row.order_id, outcome, 202 if outcome.changed else 200)  # the daemon asks VTEX


def _param(name: str, parse: Callable[[Any], T], value: Any) -> T:
    """`parse(value)`; a refusal names the query parameter."""
    try:
        return parse(value)
    except ValueError as exc:
        raise ValueError(f"{name}: {exc}") from None


def _limit(text: str) -> int:
    text = text.strip()
    if not (text.isascii() and text.isdigit() and 1 <= int(text) <= 1000):
        raise ValueError("a whole number between 1 and 1000")
    return int(text)
