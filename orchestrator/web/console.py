"""The console's pages. Every value shown goes through Jinja2's autoescaping (an order whose
customer is called `<script>` shows that text); no page shows a token or a secret. Reads need a
viewer or operator token, actions an operator (retry, cancel) or intake (invoice, tracking) one,
and every POST carries the session's CSRF token. Actions call the CLI's own functions with the
user's token name as the actor, so the order's history says who did what."""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from orchestrator.clock import utcnow
from orchestrator.config.settings import Settings
from orchestrator.durations import format_duration
from orchestrator.errors import NotFound, OperationError
from orchestrator.log import get_logger
from orchestrator.ops.alerts import alerts
from orchestrator.store.rows import ref_of
from orchestrator.store.store import Store
from orchestrator.timefmt import human
from orchestrator.web import session
from orchestrator.web.auth import OPERATE, PUSH, READ, Authenticator, Caller, token_hash
from orchestrator.web.chart import hourly_chart
from orchestrator.web.refs import order_ref
from states import operator_actions

TEMPLATES = Environment(
    loader=FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=select_autoescape(["html"], default=True),
)
REFRESH_SECONDS = 15
STATIC_DIR = Path(__file__).parent / "static"
STATIC = {"console.css": "text/css; charset=utf-8", "docs.js": "text/javascript; charset=utf-8"}


def order_href(order_id: str, account: str | None = "default", suffix: str = "") -> str:
    """The page of an order (`suffix`: one of its actions); an order outside the default account
    says which, since the same id may exist in several accounts."""
    query = f"?account={quote(account, safe='')}" if account and account != "default" else ""
    return f"/orders/{quote(order_id, safe='')}{suffix}{query}"


TEMPLATES.globals["order_href"] = order_href
TEMPLATES.globals["ref_of"] = ref_of
ACTIONS = ("retry", "cancel")  # what an order's page may offer; the state machine says when


class Console:
    def __init__(self, settings: Settings, store: Store) -> None:
        self.settings = settings
        self.store = store
        self.auth = Authenticator(store)
        self._log = get_logger(component="console")

    def routes(self) -> list[Route]:
        return [
            Route("/static/{name}", self.static, methods=["GET"]),
            Route("/login", self.login_page, methods=["GET"]),
            Route("/login", self.login, methods=["POST"]),
            Route("/logout", self.guarded(self.logout, READ, post=True), methods=["POST"]),
            Route("/", self.guarded(self.overview, READ), methods=["GET"]),
            Route("/stuck", self.guarded(self.stuck, READ), methods=["GET"]),
            Route("/search", self.guarded(self.search, READ), methods=["GET"]),
            Route("/api/docs", self.guarded(self.docs, READ), methods=["GET"]),
            Route("/orders/{order_id}", self.guarded(self.order, READ), methods=["GET"]),
            Route("/orders/{order_id}/vtex", self.guarded(self.vtex, READ), methods=["GET"]),
            Route(
                "/orders/{order_id}/confirm/{action}", self.guarded(self.confirm, OPERATE), methods=["GET"]
            ),
            Route("/orders/{order_id}/retry", self.guarded(self.retry, OPERATE, post=True), methods=["POST"]),
            Route(
                "/orders/{order_id}/cancel", self.guarded(self.cancel, OPERATE, post=True), methods=["POST"]
            ),
            Route(
                "/orders/{order_id}/invoice", self.guarded(self.invoice, PUSH, post=True), methods=["POST"]
            ),
            Route(
                "/orders/{order_id}/tracking", self.guarded(self.tracking, PUSH, post=True), methods=["POST"]
            ),
        ]

    async def static(self, request: Request) -> Response:
        """The console's style sheet and script (files, so that the pages' CSP can forbid inline
        code); nothing else is served from there."""
        name = request.path_params["name"]
        if name not in STATIC:
            return Response("not found\n", status_code=404, media_type="text/plain")
        content = (STATIC_DIR / name).read_bytes()
        return Response(content, media_type=STATIC[name], headers={"Cache-Control": "public, max-age=3600"})

    # -- sessions --------------------------------------------------------------------------------

    def render(self, name: str, status: int = 200, **context: Any) -> HTMLResponse:
        return HTMLResponse(TEMPLATES.get_template(name).render(**context), status_code=status)

    def page(self, request: Request, name: str, status: int = 200, **context: Any) -> HTMLResponse:
        """A page with the logged-in user's context (who, and the form's CSRF token)."""
        return self.render(name, status, **{**getattr(request.state, "context", {}), **context})

    def login_form(self, request: Request, status: int = 200, problem: str | None = None) -> Response:
        """The login form, with a fresh nonce in its own cookie that the post must repeat."""
        nonce = secrets.token_urlsafe(24)
        response = self.page(
            request, "login.html", status, title="Log in", caller=None, problem=problem, login_csrf=nonce
        )
        session.offer_login(response, request, nonce)
        return response

    async def login_page(self, request: Request) -> Response:
        return self.login_form(request)

    async def login(self, request: Request) -> Response:
        form = await _form(request)
        client = request.client.host if request.client else "-"
        if not session.login_form_ok(request, form.get("csrf")):
            self._log.warning("console login refused: not from the login form", client=client)
            problem = "this login form is stale or came from another site; log in from this page"
            return self.login_form(request, 403, problem)
        token = (form.get("token") or "").strip()
        caller = await run_in_threadpool(self.auth.caller, f"Bearer {token}") if token else None
        if caller is None or not caller.may(READ):
            problem = (
                "not a valid token" if caller is None else f"the {caller.role} role cannot use the console"
            )
            self._log.warning("console login failed", client=client, reason=problem)  # never the token
            return self.login_form(request, 401, problem)
        session_id = session.new_session_id()
        now = utcnow()
        await run_in_threadpool(
            self.store.start_session,
            token_hash(session_id),
            caller.name,
            now,
            now + timedelta(seconds=session.MAX_AGE),
        )
        response = RedirectResponse("/", status_code=303)
        session.start(response, request, session_id)
        return response

    async def logout(self, request: Request, _caller: Caller, _form: dict[str, str]) -> Response:
        session_id = request.cookies.get(session.COOKIE, "")
        await run_in_threadpool(self.store.end_session, token_hash(session_id), utcnow())
        response = RedirectResponse("/login", status_code=303)
        session.end(response)
        return response

    def guarded(self, page: Any, permission: str, *, post: bool = False) -> Any:
        """The page, for a logged-in user whose role allows it; a POST also needs the CSRF token.
        An order that is not there is a 404 page, an id several accounts hold a 409 naming them."""

        async def serve(request: Request) -> Response:
            session_id = request.cookies.get(session.COOKIE, "")
            caller = await run_in_threadpool(self.auth.session_caller, session_id)
            if caller is None:
                return RedirectResponse("/login", status_code=303)
            context = {"caller": caller, "csrf": session.csrf_token(session_id)}
            request.state.context = context
            request.state.session_id = session_id
            if not caller.may(permission):
                problem = f"the {caller.role} role may not do this"
                return self.page(request, "refused.html", 403, title="Not allowed", problem=problem)
            try:
                if not post:
                    return await page(request, caller)  # type: ignore[no-any-return]
                form = await _form(request)
                if not session.csrf_ok(session_id, form.get("csrf")):
                    problem = (
                        "this form is stale or came from another site (no valid CSRF token); nothing was done"
                    )
                    return self.page(request, "refused.html", 403, title="Refused", problem=problem)
                return await page(request, caller, form)  # type: ignore[no-any-return]
            except UnknownOrder as missing:
                return self.page(request, "refused.html", 404, title="Not found", problem=str(missing))
            except OperationError as exc:
                back = f"/orders/{quote(request.path_params.get('order_id', ''), safe='')}"
                return self.page(request, "refused.html", 409, title="Refused", problem=str(exc), back=back)

        return serve

    # -- reading ---------------------------------------------------------------------------------

    async def overview(self, request: Request, caller: Caller) -> Response:
        from orchestrator.ops.status import report

        now = utcnow()
        data = await run_in_threadpool(
            partial(report, limit=0, accounts=self.settings.account_graces),
            self.store,
            now,
            self.settings.stuck_rules,
            self.settings.grace_period,
        )
        oldest = {state: format_duration(entry["ageSeconds"]) for state, entry in data["oldest"].items()}
        active = await run_in_threadpool(self.store.oldest_active_order)
        chart = hourly_chart(
            await run_in_threadpool(self.store.finished_since, now - timedelta(hours=72)), now, 72
        )
        return self.page(
            request,
            "overview.html",
            title="Overview",
            report=data,
            oldest=oldest,
            oldest_active={
                "order_id": active.order_id,
                "account": active.account,
                "ref": active.ref,
                "age": format_duration(now - active.created_at),
            }
            if active
            else None,
            alerts=_alerts(data, now),
            chart=chart,
            refresh=REFRESH_SECONDS,
            generated=human(now),
        )

    async def stuck(self, request: Request, caller: Caller) -> Response:
        from orchestrator.ops.status import report

        now = utcnow()
        data = await run_in_threadpool(
            partial(report, accounts=self.settings.account_graces),
            self.store,
            now,
            self.settings.stuck_rules,
            self.settings.grace_period,
        )
        stuck = [
            {
                **entry,
                "age": format_duration(entry["secondsInState"]),
                "action": "retry" if "retry" in operator_actions(entry["state"]) else None,
            }
            for entry in data["stuck"]
        ]
        return self.page(
            request,
            "stuck.html",
            title="Stuck orders",
            report={**data, "stuck": stuck},
            may_operate=caller.may(OPERATE),
        )

    async def docs(self, request: Request, caller: Caller) -> Response:
        """Interactive API docs: each route from the same table as the OpenAPI document, with a
        form that sends it (the page's own script; the token typed there stays in the page)."""
        from orchestrator.web.api import Routes
        from orchestrator.web.spec import ROLES_FOR

        endpoints = [
            {
                "method": e.method,
                "path": e.path,
                "summary": e.summary,
                "roles": ROLES_FOR.get(e.permission, "any"),
            }
            for e in Routes(self).table()
        ]
        return self.page(request, "docs.html", title="API", endpoints=endpoints)

    async def search(self, request: Request, caller: Caller) -> Response:
        key = (request.query_params.get("q") or "").strip()
        rows = await run_in_threadpool(self.store.find_any, key) if key else []
        if len(rows) == 1:
            return RedirectResponse(order_href(rows[0].order_id, rows[0].account), status_code=303)
        problem = (
            None if rows else f"no order has {key!r} as order id, marketplace order id or invoice number"
        )
        return self.page(
            request,
            "list.html",
            title=f"Orders matching {key!r}",
            rows=rows,
            problem=problem,
        )

    async def _row(self, request: Request) -> Any:
        """The order the path names (UnknownOrder when none; OperationError naming the matches
        when several accounts hold that id)."""
        ref = order_ref(request)
        row = await run_in_threadpool(self.store.find, ref)
        if row is None:
            raise UnknownOrder(f"no order {ref!r}")
        return row

    async def order(self, request: Request, caller: Caller) -> Response:
        row = await self._row(request)
        events = await run_in_threadpool(self.store.events, row.id)
        timeline = [
            {
                **e,
                "at": human(e["at"]),
                "moved": f"{e['from_state']} → {e['to_state']}" if e["from_state"] else (e["to_state"] or ""),
                "ms": f"{e['duration_ms']:.0f}" if e["duration_ms"] is not None else "",
                "detail": " ".join(x for x in (e["error_code"], e["message"]) if x),
            }
            for e in events
        ]
        actions = operator_actions(row.state)
        return self.page(
            request,
            "order.html",
            title=row.order_id,
            order=row,
            facts=_facts(row, utcnow()),
            events=timeline,
            actions=actions,
            may_operate=caller.may(OPERATE),
            may_push=caller.may(PUSH),
            message=_banner(request),
        )

    async def vtex(self, request: Request, caller: Caller) -> Response:
        from orchestrator.ops.check import vtex_view

        row = await self._row(request)
        view = await vtex_view(self.settings.account(row.account), self.store, row.order_id)
        error = view.error
        theirs = view.order or {}
        rows = [
            ("state / status", row.state, theirs.get("status", "-")),
            ("value (cents)", row.value, theirs.get("value", "-")),
            (
                "invoice",
                row.invoice_number or "none",
                ", ".join(
                    str(p.get("invoiceNumber"))
                    for p in (theirs.get("packageAttachment") or {}).get("packages") or []
                )
                or "none",
            ),
        ]
        return self.page(
            request,
            "vtex.html",
            title=f"{row.order_id} in VTEX",
            order=row,
            rows=rows,
            error=error,
        )

    # -- acting ----------------------------------------------------------------------------------

    async def confirm(self, request: Request, caller: Caller) -> Response:
        row = await self._row(request)
        action = request.path_params["action"]
        if action not in ACTIONS:
            return self.page(
                request,
                "refused.html",
                404,
                title="Not found",
                problem=f"no action {action!r}",
            )
        explanation = {
            "retry": "It goes back where it failed; the failed step is first reconciled with VTEX, "
            "then sent again if it did not take effect.",
            "cancel": "VTEX is asked to cancel it (while it still allows); an order VTEX never received "
            "is canceled here only.",
        }[action]
        return self.page(
            request,
            "confirm.html",
            title=f"{action} {row.order_id}",
            order=row,
            action=action,
            explanation=explanation,
        )

    async def retry(self, request: Request, caller: Caller, form: dict[str, str]) -> Response:
        from orchestrator.ops.operations import retry
        from orchestrator.ops.reconcile_first import reconciling_first

        row = await self._row(request)
        outcome = await run_in_threadpool(
            reconciling_first,
            self.settings,
            self.store,
            row.ref,
            partial(retry, self.store, row.ref, self.settings, caller.actor),
        )
        return _back(request, row, outcome.message)

    async def cancel(self, request: Request, caller: Caller, form: dict[str, str]) -> Response:
        from orchestrator.ops.operations import request_cancel

        row = await self._row(request)
        reason = (form.get("reason") or "").strip() or f"canceled by {caller.name}"
        outcome = await run_in_threadpool(request_cancel, self.store, row.ref, reason, caller.actor)
        return _back(request, row, outcome.message)

    async def invoice(self, request: Request, caller: Caller, form: dict[str, str]) -> Response:
        from orchestrator.intake.validation import validate_invoice
        from orchestrator.ops.operations import attach_invoice, invoice_from_options
        from orchestrator.ops.reconcile_first import reconciling_first

        row = await self._row(request)
        number, value = (form.get("number") or "").strip(), (form.get("value") or "").strip()
        if not number or not value.isdigit():
            raise OperationError("give the invoice number and its value in cents")
        body = invoice_from_options(row, number, int(value), issued_at=None, url=None, key=None)
        problems = validate_invoice(body, row.value)
        if problems:
            raise OperationError("; ".join(f"{f}: {m}" for f, m in problems))
        attach = partial(attach_invoice, self.store, row.ref, body, caller.actor)
        outcome = await run_in_threadpool(reconciling_first, self.settings, self.store, row.ref, attach)
        return _back(request, row, outcome.message)

    async def tracking(self, request: Request, caller: Caller, form: dict[str, str]) -> Response:
        from orchestrator.ops.operations import attach_tracking, tracking_problems
        from orchestrator.ops.reconcile_first import reconciling_first

        row = await self._row(request)
        tracking = {
            "trackingNumber": (form.get("trackingNumber") or "").strip(),
            "courier": form.get("courier") or None,
        }
        problems = tracking_problems(tracking)
        if problems:
            raise OperationError("; ".join(problems))
        attach = partial(attach_tracking, self.store, row.ref, tracking, caller.actor)
        outcome = await run_in_threadpool(reconciling_first, self.settings, self.store, row.ref, attach)
        return _back(request, row, outcome.message)


async def _form(request: Request) -> dict[str, str]:
    """A urlencoded form, bounded (these forms are a few fields)."""
    from orchestrator.web.bodies import read_body

    raw = await read_body(request, 64 * 1024)
    return {k: v[0] for k, v in parse_qs(raw.decode("utf-8", "replace")).items()}


class UnknownOrder(NotFound):
    """The path names no order: a 404 page."""


def _back(request: Request, row: Any, message: str) -> Response:
    """Back to the order's page, with `message` in its banner, signed for this session."""
    href = order_href(row.order_id, row.account)
    joiner = "&" if "?" in href else "?"
    signature = session.sign(request.state.session_id, message)
    return RedirectResponse(f"{href}{joiner}done={quote(message)}&sig={signature}", status_code=303)


def _banner(request: Request) -> str | None:
    """The success message to show: only one this server signed for this session (`?done=`
    alone, from a link someone else made, shows nothing)."""
    message = request.query_params.get("done")
    if message is None or not session.signed_ok(
        request.state.session_id, message, request.query_params.get("sig")
    ):
        return None
    return message


def _facts(row: Any, now: datetime) -> list[tuple[str, Any]]:
    customer = (row.place_body.get("clientProfileData") or {}) if row.place_body else {}
    name = " ".join(str(customer.get(k) or "") for k in ("firstName", "lastName")).strip()
    return [
        ("affiliate / marketplace id", f"{row.affiliate_id} / {row.marketplace_order_id}"),
        ("customer", name or "-"),
        (
            "state",
            f"{row.state} since {human(row.state_changed_at)} "
            f"({format_duration(now - row.state_changed_at)} ago)",
        ),
        ("value", f"{row.value} cents"),
        ("invoice", row.invoice_number or "none attached"),
        ("tracking", row.tracking_number or "-"),
        ("last VTEX status", row.vtex_status or "-"),
        ("attempts", row.attempts),
        ("last error", row.last_error or "-"),
        ("waiting for", row.wait_reason or row.needs_attention or "-"),
        ("open intent", row.intent or "-"),
    ]


def _alerts(data: Any, now: datetime) -> list[dict[str, str]]:
    return [{"kind": alert.kind, "text": alert.text} for alert in alerts(data, now)]
