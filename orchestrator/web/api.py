"""The API's routes, each the CLI's function behind an HTTP shape: intake, late data, reads and
operations, so the two can never disagree. Every action taken here is in the order's history
under the token's name (`api:<name>`).

Answers: 201 something new was stored, 200 nothing new (an idempotent re-post) or a read, 202
accepted for the daemon to finish, 404 no such order, 409 refused for that order now, 413 body
too large, 422 invalid (problems with index, field and message), 400 malformed. Each endpoint
declares its own (`Endpoint.answers`), and the OpenAPI document is written from them. Refusals
are raised, not returned: `web.app`'s exception handlers answer them, in one shape.

The store is synchronous, so its calls run in the thread pool; an operation that must ask VTEX
first (an open intent) does so on the server's own event loop, with the account's client that
lives as long as the server (`AccountClients`).
"""

from __future__ import annotations

from functools import partial
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from orchestrator.clock import utcnow
from orchestrator.config.settings import Settings
from orchestrator.engine.clients import AccountClients
from orchestrator.errors import NoSuchOrder
from orchestrator.intake.importer import import_lines
from orchestrator.intake.validation import validate_invoice
from orchestrator.ops.check import vtex_view
from orchestrator.ops.operations import (
    Change,
    cancel_change,
    invoice_change,
    retry_change,
    return_change,
    tracking_change,
    tracking_problems,
)
from orchestrator.ops.reconcile_first import reconciling_first
from orchestrator.ops.status import report
from orchestrator.ops.views import event_json, order_json, order_summary
from orchestrator.store.rows import AmbiguousOrder, OrderRow
from orchestrator.store.store import Store
from orchestrator.web import schemas
from orchestrator.web.auth import OPERATE, PUSH, READ
from orchestrator.web.bodies import BodyError, invalid, json_body, order_lines, read_body
from orchestrator.web.http import Answer, Endpoint, caller_of, order_ref
from orchestrator.web.order_query import account_param, listed, read_query
from states.invoices import INPUT

ACCOUNT = "the configured VTEX account (with several, the same order id may exist in each)"
NO_ORDER = Answer(404, "no such order", schemas.ErrorBody)
REFUSED = Answer(409, "refused for this order now; the message says why", schemas.ErrorBody)
INVALID = Answer(422, "invalid: each problem with its field", schemas.ErrorBody)
MALFORMED = Answer(400, "not JSON, not UTF-8, or a query parameter that does not parse", schemas.ErrorBody)
TOO_LARGE = Answer(413, "the body is too large", schemas.ErrorBody)


class Api:
    """The routes' handlers and the table that describes them."""

    def __init__(self, settings: Settings, store: Store, clients: AccountClients) -> None:
        self.settings = settings
        self.store = store
        self.clients = clients

    def endpoints(self) -> list[Endpoint]:
        late = (MALFORMED, NO_ORDER, REFUSED, TOO_LARGE, INVALID)
        return [
            Endpoint(
                "POST",
                "/api/orders",
                PUSH,
                "push orders: a record, an array, or JSON Lines",
                self.post_orders,
                answers=(
                    Answer(201, "stored (imported or replaced)", schemas.ImportAnswer),
                    Answer(200, "nothing new: every order was there already", schemas.ImportAnswer),
                    MALFORMED,
                    Answer(409, "in conflict with stored orders: nothing stored", schemas.ErrorBody),
                    TOO_LARGE,
                    Answer(
                        422,
                        "invalid: nothing stored; each problem with its record's index",
                        schemas.ErrorBody,
                    ),
                ),
                takes=schemas.OrderRecord | list[schemas.OrderRecord],
                takes_media=("application/json", "application/x-ndjson"),
                query={"replace": "1: correct orders VTEX never accepted (as `import --replace`)"},
            ),
            Endpoint(
                "GET",
                "/api/orders",
                READ,
                "list orders",
                self.list_orders,
                answers=(Answer(200, "a page of orders", schemas.OrderList), MALFORMED),
                query={
                    "state": "only these states (repeat it)",
                    "account": ACCOUNT,
                    "affiliate": "only this affiliate",
                    "olderThan": "only orders in their state longer than this (30m, 2h, 1d)",
                    "code": "only orders whose last error has this code",
                    "waiting": "only orders whose wait reason contains this",
                    "partlyInvoiced": "1: only orders VTEX took some invoices of, not invoiced yet",
                    "returned": "1: only orders with a return (Input invoice) VTEX took",
                    "find": "an order id, marketplace order id or invoice number",
                    "search": "part of an order id, marketplace order id, invoice number or customer name",
                    "sort": "created, changed or order-id; - for descending (default -created)",
                    "limit": "1 to 1000 (default 50)",
                    "after": "the nextCursor of the previous page",
                },
            ),
            Endpoint(
                "GET",
                "/api/orders/{order_id}",
                READ,
                "one order and its history",
                self.get_order,
                answers=(
                    Answer(200, "the order and its history", schemas.OrderDetail),
                    NO_ORDER,
                    Answer(409, "several accounts hold this id: name one (matches)", schemas.ErrorBody),
                ),
                query={"account": ACCOUNT, "vtex": "1: VTEX's view of the order beside ours"},
            ),
            Endpoint(
                "POST",
                "/api/orders/{order_id}/invoice",
                PUSH,
                "attach an invoice (the first, or one more: a partial invoice)",
                self.post_invoice,
                answers=(
                    Answer(201, "attached; the daemon sends it when allowed", schemas.Outcome),
                    Answer(200, "that invoice was attached already", schemas.Outcome),
                    *late,
                ),
                takes=schemas.Invoice,
                query={"account": ACCOUNT},
            ),
            Endpoint(
                "POST",
                "/api/orders/{order_id}/returns",
                PUSH,
                "register a return (an Input invoice) of an invoiced order",
                self.post_return,
                answers=(
                    Answer(201, "registered; the daemon sends it to VTEX, which refunds it", schemas.Outcome),
                    Answer(200, "that return was registered already", schemas.Outcome),
                    *late,
                ),
                takes=schemas.Invoice,
                query={"account": ACCOUNT},
            ),
            Endpoint(
                "POST",
                "/api/orders/{order_id}/tracking",
                PUSH,
                "attach a tracking number",
                self.post_tracking,
                answers=(
                    Answer(
                        201,
                        "attached; inside its invoice if not sent yet, else sent once the order is invoiced",
                        schemas.Outcome,
                    ),
                    Answer(200, "that tracking number was attached already", schemas.Outcome),
                    *late,
                ),
                takes=schemas.Tracking,
                query={"account": ACCOUNT},
            ),
            Endpoint(
                "POST",
                "/api/orders/{order_id}/retry",
                OPERATE,
                "retry a failed order",
                self.retry,
                answers=(
                    Answer(200, "back in the flow (or nothing to do)", schemas.Outcome),
                    NO_ORDER,
                    REFUSED,
                ),
                query={"account": ACCOUNT},
            ),
            Endpoint(
                "POST",
                "/api/orders/{order_id}/cancel",
                OPERATE,
                "cancel an order",
                self.cancel,
                answers=(
                    Answer(202, "cancel requested; the daemon asks VTEX", schemas.Outcome),
                    Answer(200, "canceled already, or a cancel is on its way", schemas.Outcome),
                    MALFORMED,
                    NO_ORDER,
                    REFUSED,
                ),
                takes=schemas.CancelRequest,
                body_required=False,
                query={"account": ACCOUNT},
            ),
            Endpoint(
                "GET",
                "/api/status",
                READ,
                "counts, pauses, daemons and stuck orders",
                self.status,
                answers=(
                    Answer(200, "the status report (as `status --json`)", schemas.StatusReport),
                    MALFORMED,
                ),
                query={"account": ACCOUNT},
            ),
        ]

    async def _order(self, request: Request) -> OrderRow:
        """The order the path names, by any id `GET /api/orders/{id}` takes."""
        ref = order_ref(request)
        row = await run_in_threadpool(self.store.find, ref)
        if row is None:
            row = await run_in_threadpool(self.store.the_order, ref)  # NoSuchOrder when none
        return row

    # -- intake and late data --------------------------------------------------------------------

    async def post_orders(self, request: Request) -> Response:
        lines = order_lines(await read_body(request), request.headers.get("content-type", ""))
        work = partial(
            import_lines,
            lines,
            self.store,
            utcnow(),
            worker=caller_of(request).actor,
            replace=request.query_params.get("replace") in ("1", "true"),
            accounts=list(self.settings.all_accounts),
        )
        done = await run_in_threadpool(work)
        if done.problems:
            problems = [
                schemas.Problem(index=p.line - 1, field=p.field, message=p.message) for p in done.problems
            ]
            what = "in conflict with stored orders" if done.conflict else "invalid"
            records = len({p.line for p in done.problems})
            message = (
                f"nothing stored: {records} of {done.lines} record(s) {what} "
                f"({done.problems_total} problem(s))"
            )
            raise BodyError(409 if done.conflict else 422, message, problems)
        if done.empty:
            raise BodyError(422, "the body holds no orders")
        body = schemas.ImportAnswer(
            imported=done.imported,
            replaced=[schemas.Replaced(orderId=r.order_id, was=r.was) for r in done.replaced],
            alreadyPresent=done.already_present,
        )
        return JSONResponse(body, status_code=201 if done.imported or done.replaced else 200)

    async def post_invoice(self, request: Request) -> Response:
        row = await self._order(request)
        body = await _object(request, "invoice")
        problems = validate_invoice(body, row.target_value)
        if problems:
            raise invalid(problems)
        return await self._late(request, row, invoice_change(row.ref, body))

    async def post_return(self, request: Request) -> Response:
        row = await self._order(request)
        body = await _object(request, "return")
        problems = validate_invoice(body, None, kind=INPUT)
        if problems:
            raise invalid(problems)
        return await self._late(request, row, return_change(row.ref, body))

    async def post_tracking(self, request: Request) -> Response:
        row = await self._order(request)
        body = await _object(request, "tracking")
        problems = tracking_problems(body)
        if problems:
            raise invalid(problems)
        return await self._late(request, row, tracking_change(row.ref, body, body.get("invoiceNumber")))

    async def _late(self, request: Request, row: OrderRow, change: Change) -> Response:
        outcome = await reconciling_first(
            self.settings, self.store, self.clients, row.ref, change, actor=caller_of(request).actor
        )
        return _done(row.order_id, outcome.changed, outcome.message, 201 if outcome.changed else 200)

    # -- reads -----------------------------------------------------------------------------------

    async def list_orders(self, request: Request) -> Response:
        query = read_query(request.query_params, self.settings)
        now = utcnow()
        rows, cursor = await run_in_threadpool(listed, self.store, query, now)
        body = schemas.OrderList(orders=[order_summary(r, now) for r in rows], nextCursor=cursor)
        return JSONResponse(body)

    async def get_order(self, request: Request) -> Response:
        key = order_ref(request)
        found = await run_in_threadpool(self.store.find_any, key)
        if len(found) > 1:
            raise AmbiguousOrder(key, [r.ref for r in found])
        if not found:
            raise NoSuchOrder(key)
        row = found[0]
        events = await run_in_threadpool(self.store.events, row.id)
        body = schemas.OrderDetail(order=order_json(row), events=[event_json(e) for e in events])
        if request.query_params.get("vtex") in ("1", "true"):
            account = self.settings.account(row.account)
            view = await vtex_view(self.clients.client(account), account, self.store, row.order_id)
            body["vtex"], body["vtexError"] = view.order, view.error
        return JSONResponse(body)

    async def status(self, request: Request) -> Response:
        work = partial(
            report,
            self.store,
            utcnow(),
            self.settings.stuck_rules,
            self.settings.grace_period,
            accounts=self.settings.account_graces,
            names=self.settings.account_names,
            account=account_param(request.query_params.get("account"), self.settings),
        )
        return JSONResponse(await run_in_threadpool(work))

    # -- operations ------------------------------------------------------------------------------

    async def retry(self, request: Request) -> Response:
        row = await self._order(request)
        outcome = await reconciling_first(
            self.settings,
            self.store,
            self.clients,
            row.ref,
            retry_change(row.ref, self.settings),
            actor=caller_of(request).actor,
        )
        return _done(row.order_id, outcome.changed, outcome.message)

    async def cancel(self, request: Request) -> Response:
        row = await self._order(request)
        caller = caller_of(request)
        raw = await read_body(request, 64 * 1024)
        body = json_body(raw) if raw.strip() else {}
        given = body.get("reason") if isinstance(body, dict) else None
        reason = (
            given
            if isinstance(given, str) and given.strip()
            else f"canceled through the API by {caller.name}"
        )
        outcome = await reconciling_first(
            self.settings,
            self.store,
            self.clients,
            row.ref,
            cancel_change(row.ref, reason),
            actor=caller.actor,
        )
        return _done(row.order_id, outcome.changed, outcome.message, 202 if outcome.changed else 200)


def _done(order_id: str, changed: bool, message: str, status: int = 200) -> Response:
    return JSONResponse(
        schemas.Outcome(orderId=order_id, changed=changed, message=message), status_code=status
    )


async def _object(request: Request, what: str) -> dict[str, Any]:
    body = json_body(await read_body(request, 1024 * 1024))
    if not isinstance(body, dict):
        raise BodyError(422, f"the body must be one JSON object (the {what})")
    return body
