"""The console's pages. Every value shown goes through Jinja2's autoescaping (an order whose
customer is called `<script>` shows that text); no page shows a token or a secret. Reads need a
viewer or operator session, actions an operator (retry, cancel) or intake (invoice, tracking)
one (`requires`, as the API's routes), and every POST carries the session's CSRF token. Actions
call the CLI's own functions with the user's token name as the actor, so the order's history says
who did what. A refusal raised by a page is answered by `refusal`, through `web.app`'s exception
handlers."""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from datetime import datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import QueryParams
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from orchestrator.clock import utcnow
from orchestrator.config.account_tables import DEFAULT_ACCOUNT
from orchestrator.config.settings import Settings
from orchestrator.durations import format_duration
from orchestrator.engine.clients import AccountClients
from orchestrator.errors import NoSuchOrder, NotFound, OperationError, OrchestratorError, UsageError
from orchestrator.log import get_logger
from orchestrator.money import money
from orchestrator.ops import invoicing
from orchestrator.ops.alerts import alerts
from orchestrator.ops.check import vtex_view
from orchestrator.ops.operations import (
    cancel_change,
    invoice_change,
    invoice_from_options,
    retry_change,
    return_change,
    return_from_options,
    tracking_change,
    tracking_problems,
)
from orchestrator.ops.reconcile_first import reconciling_first
from orchestrator.ops.status import StatusReport, report
from orchestrator.ops.stuck import diagnose
from orchestrator.ops.views import event_text
from orchestrator.store.listing import customer_name
from orchestrator.store.rows import OrderRow, ref_of
from orchestrator.store.store import Store
from orchestrator.timefmt import human, iso
from orchestrator.web import session
from orchestrator.web.auth import OPERATE, PUSH, READ, Authenticator, Caller, token_hash
from orchestrator.web.bodies import read_body
from orchestrator.web.chart import hourly_chart
from orchestrator.web.http import Endpoint, caller_of, order_ref
from orchestrator.web.order_query import account_param
from orchestrator.web.spec import ROLES_FOR
from states import invoices, operator_actions

TEMPLATES = Environment(
    loader=FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=select_autoescape(["html"], default=True),
)
REFRESH_SECONDS = 15
STATIC_DIR = Path(__file__).parent / "static"
STATIC = {
    "console.css": "text/css; charset=utf-8",
    "console.js": "text/javascript; charset=utf-8",
    "docs.js": "text/javascript; charset=utf-8",
}
FORM_LIMIT = 1024 * 1024  # a ticked page of 1,000 orders, or an order's body being repaired
TITLES = {400: "Refused", 403: "Not allowed", 404: "Not found", 409: "Refused", 503: "Unavailable"}


def order_href(order_id: str, account: str | None = DEFAULT_ACCOUNT, suffix: str = "") -> str:
    """The page of an order (`suffix`: one of its actions); an order outside the default account
    says which, since the same id may exist in several accounts."""
    query = f"?account={quote(account, safe='')}" if account and account != DEFAULT_ACCOUNT else ""
    return f"/orders/{quote(order_id, safe='')}{suffix}{query}"


def when(value: datetime | str | None) -> Markup:
    """A time as the console writes it: UTC, which everyone sharing a deployment reads alike, in a
    `<time>` element whose tooltip `console.js` sets to the reader's own local time."""
    if value is None:
        return Markup("-")
    at = datetime.fromisoformat(value.replace("Z", "+00:00")) if isinstance(value, str) else value
    return Markup('<time datetime="{}">{}</time>').format(iso(at), human(at))


TEMPLATES.globals["order_href"] = order_href
TEMPLATES.globals["ref_of"] = ref_of
TEMPLATES.globals["when"] = when
TEMPLATES.globals["money"] = money
ACTIONS = ("retry", "cancel")  # what an order's page may offer; the state machine says when


class FormRefused(UsageError):
    """A posted form without this session's CSRF token: stale, or made by another site."""

    serve_status = 403


class Console:
    def __init__(
        self,
        settings: Settings,
        store: Store,
        clients: AccountClients,
        authenticator: Authenticator,
        endpoints: list[Endpoint],
    ) -> None:
        self.settings = settings
        self.store = store
        self.clients = clients
        self.auth = authenticator
        self.endpoints = endpoints  # the API's, for its page
        self.log = get_logger(component="console")

    def currency(self, account: str) -> str:
        """The account's currency; an order of an account no longer configured shows the
        deployment's."""
        configured = self.settings.all_accounts.get(account)
        return configured.currency if configured else self.settings.currency

    async def static(self, request: Request) -> Response:
        """The console's style sheet and script (files, so that the pages' CSP can forbid inline
        code); nothing else is served from there."""
        name = request.path_params["name"]
        if name not in STATIC:
            return Response("not found\n", status_code=404, media_type="text/plain")
        content = (STATIC_DIR / name).read_bytes()
        return Response(content, media_type=STATIC[name], headers={"Cache-Control": "public, max-age=3600"})

    # -- pages and refusals ------------------------------------------------------------------------

    def page(self, request: Request, name: str, status: int = 200, **context: Any) -> HTMLResponse:
        """A page with the logged-in user's context (who, and the forms' CSRF token)."""
        user = request.scope.get("user")  # absent on the pages that need no login
        caller = user if isinstance(user, Caller) else None
        session_id = request.cookies.get(session.COOKIE, "")
        mine = {"caller": caller, "csrf": session.csrf_token(session_id) if caller else None}
        html = TEMPLATES.get_template(name).render(**{**mine, **context})
        return HTMLResponse(html, status_code=status)

    def refusal(self, request: Request, exc: OrchestratorError) -> Response:
        """The page for something refused: what and why, and the way back to the order."""
        status = exc.serve_status
        order_id = request.path_params.get("order_id")
        back = (
            order_href(order_id, request.query_params.get("account")) if order_id and status == 409 else None
        )
        return self.page(
            request, "refused.html", status, title=TITLES.get(status, "Refused"), problem=str(exc), back=back
        )

    def forbidden(self, request: Request) -> Response:
        """A logged-in user whose role does not allow the page."""
        caller = caller_of(request)
        problem = f"the {caller.role} role may not do this"
        return self.page(request, "refused.html", 403, title="Not allowed", problem=problem)

    # -- sessions --------------------------------------------------------------------------------

    def login_form(
        self, request: Request, status: int = 200, problem: str | None = None, after: str = "/"
    ) -> Response:
        """The login form, with a fresh nonce in its own cookie that the post must repeat."""
        nonce = secrets.token_urlsafe(24)
        response = self.page(
            request,
            "login.html",
            status,
            title="Log in",
            caller=None,
            problem=problem,
            login_csrf=nonce,
            next=after,
        )
        session.offer_login(response, request, nonce)
        return response

    async def login_page(self, request: Request) -> Response:
        return self.login_form(request, after=_local(request.query_params.get("next")))

    async def login(self, request: Request) -> Response:
        form = await _form(request)
        after = _local(form.get("next"))
        client = request.client.host if request.client else "-"
        if not session.login_form_ok(request, form.get("csrf")):
            self.log.warning("console login refused: not from the login form", client=client)
            problem = "this login form is stale or came from another site; log in from this page"
            return self.login_form(request, 403, problem, after)
        token = (form.get("token") or "").strip()
        caller = await run_in_threadpool(self.auth.caller, f"Bearer {token}") if token else None
        if caller is None or not caller.may(READ):
            problem = (
                "not a valid token" if caller is None else f"the {caller.role} role cannot use the console"
            )
            self.log.warning("console login failed", client=client, reason=problem)  # never the token
            return self.login_form(request, 401, problem, after)
        session_id = session.new_session_id()
        now = utcnow()
        await run_in_threadpool(
            self.store.start_session,
            token_hash(session_id),
            caller.name,
            now,
            now + timedelta(seconds=session.MAX_AGE),
        )
        response = RedirectResponse(after, status_code=303)
        session.start(response, request, session_id)
        return response

    async def logout(self, request: Request) -> Response:
        await posted(request)
        session_id = request.cookies.get(session.COOKIE, "")
        await run_in_threadpool(self.store.end_session, token_hash(session_id), utcnow())
        response = RedirectResponse("/login", status_code=303)
        session.end(response)
        return response

    # -- reading ---------------------------------------------------------------------------------

    async def _report(self, limit: int | None = None, account: str | None = None) -> StatusReport:
        extra: dict[str, Any] = {} if limit is None else {"limit": limit}
        if account is not None:
            extra["account"] = account
        work = partial(
            report,
            self.store,
            utcnow(),
            self.settings.stuck_rules,
            self.settings.grace_period,
            accounts=self.settings.account_graces,
            names=self.settings.account_names,
            **extra,
        )
        return await run_in_threadpool(work)

    async def overview(self, request: Request) -> Response:
        now = utcnow()
        account = account_param(request.query_params.get("account") or None, self.settings)
        data = await self._report(limit=0, account=account)
        oldest = {state: format_duration(entry["ageSeconds"]) for state, entry in data["oldest"].items()}
        active = await run_in_threadpool(self.store.oldest_active_order, account)
        chart = hourly_chart(
            await run_in_threadpool(self.store.finished_since, now - timedelta(hours=72), account), now, 72
        )
        pauses = {p.account: p for p in await run_in_threadpool(self.store.account_pauses)}
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
            alerts=[{"kind": alert.kind, "text": alert.text} for alert in alerts(data, now)],
            chart=chart,
            refresh=REFRESH_SECONDS,
            generated=when(now),
            account=account,
            accounts=[
                {"name": name, "paused": pauses.get(a.key)} for name, a in self.settings.all_accounts.items()
            ],
            counts_by_account=data.get("countsByAccount") or {},
        )

    async def stuck(self, request: Request) -> Response:
        data = await self._report()
        caller = caller_of(request)
        stuck = [{**entry, **_fix_link(entry, caller)} for entry in data["stuck"]]
        for entry in stuck:
            entry["age"] = format_duration(entry["secondsInState"])
        return self.page(
            request,
            "stuck.html",
            title="Stuck orders",
            report={**data, "stuck": stuck},
            may_operate=caller_of(request).may(OPERATE),
        )

    async def docs(self, request: Request) -> Response:
        """Interactive API docs: each route from the same table as the OpenAPI document, with a
        form that sends it (the page's own script; the token typed there stays in the page)."""
        endpoints = [
            {
                "method": e.method,
                "path": e.path,
                "summary": e.summary,
                "roles": ROLES_FOR.get(e.permission, "any"),
                "answers": [f"{a.status} {a.description}" for a in e.answers],
            }
            for e in self.endpoints
        ]
        return self.page(request, "docs.html", title="API", endpoints=endpoints)

    async def search(self, request: Request) -> Response:
        key = (request.query_params.get("q") or "").strip()
        rows = await run_in_threadpool(self.store.find_any, key) if key else []
        if len(rows) == 1:
            return RedirectResponse(order_href(rows[0].order_id, rows[0].account), status_code=303)
        problem = (
            None if rows else f"no order has {key!r} as order id, marketplace order id or invoice number"
        )
        return self.page(
            request, "list.html", title=f"Orders matching {key!r}", rows=rows, problem=problem, key=key
        )

    async def row_of(self, request: Request) -> OrderRow:
        """The order the path names (NotFound when none; AmbiguousOrder naming the matches when
        several accounts hold that id)."""
        ref = order_ref(request)
        row = await run_in_threadpool(self.store.find, ref)
        if row is None:
            raise NoSuchOrder(ref)
        return row

    async def order(self, request: Request) -> Response:
        return await self._order_page(request, await self.row_of(request))

    async def _order_page(
        self, request: Request, row: OrderRow, refused: dict[str, Any] | None = None, status: int = 200
    ) -> Response:
        """The order's page; `refused`: a form of it that was refused (which form, why, and what
        was typed), shown open with its values and the problem beside it."""
        caller = caller_of(request)
        events = await run_in_threadpool(self.store.events, row.id)
        timeline = [
            {
                **e,
                "at": when(e["at"]),
                "moved": f"{e['from_state']} → {e['to_state']}" if e["from_state"] else (e["to_state"] or ""),
                "ms": f"{e['duration_ms']:.0f}" if e["duration_ms"] is not None else "",
                "detail": event_text(e),
            }
            for e in events
        ]
        now = utcnow()
        currency = self.currency(row.account)
        grace = self.settings.account_graces.get(row.account, self.settings.grace_period)
        diagnosis = diagnose(row, now, self.settings.stuck_rules, grace)
        return self.page(
            request,
            "order.html",
            status,
            refused=refused or {},
            title=row.order_id,
            order=row,
            facts=_facts(row, now, currency),
            events=timeline,
            actions=offered(row, diagnosis.fix),
            diagnosis=diagnosis,
            may_repair=diagnosis.fix == "repair",
            currency=currency,
            invoices=invoicing.entries_view(row),
            invoice_summary=invoicing.summary(row, currency),
            value_left=max(row.target_value - invoices.total(row.invoices, invoices.OUTPUT), 0),
            may_operate=caller.may(OPERATE),
            may_push=caller.may(PUSH),
            message=banner(request),
        )

    async def vtex(self, request: Request) -> Response:
        row = await self.row_of(request)
        account = self.settings.account(row.account)
        view = await vtex_view(self.clients.client(account), account, self.store, row.order_id)
        theirs = view.order or {}
        packages = (theirs.get("packageAttachment") or {}).get("packages") or []
        rows = [
            ("state / status", row.state, theirs.get("status", "-")),
            ("value (cents)", row.target_value, theirs.get("value", "-")),
            (
                "invoices",
                ", ".join(f"{e['number']} ({e['type']})" for e in row.invoices or ()) or "none",
                ", ".join(f"{p.get('invoiceNumber')} ({p.get('type')})" for p in packages) or "none",
            ),
        ]
        return self.page(
            request, "vtex.html", title=f"{row.order_id} in VTEX", order=row, rows=rows, error=view.error
        )

    # -- acting ----------------------------------------------------------------------------------

    async def confirm(self, request: Request) -> Response:
        row = await self.row_of(request)
        action = request.path_params["action"]
        if action not in ACTIONS:
            raise NotFound(f"no action {action!r}")
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

    async def retry(self, request: Request) -> Response:
        await posted(request)
        row = await self.row_of(request)
        return await self._act(request, row, retry_change(row.ref, self.settings))

    async def cancel(self, request: Request) -> Response:
        form = await posted(request)
        row = await self.row_of(request)
        caller = caller_of(request)
        reason = (form.get("reason") or "").strip() or f"canceled by {caller.name}"
        return await self._act(request, row, cancel_change(row.ref, reason))

    async def invoice(self, request: Request) -> Response:
        form = await posted(request)
        row = await self.row_of(request)
        number, value = (form.get("number") or "").strip(), (form.get("value") or "").strip()
        if not number or not value.isdigit():
            missing = OperationError("number, value: give the invoice number and its value in cents")
            return await self._form_act(request, form, row, "invoice", missing)
        body = invoice_from_options(row, number, int(value), issued_at=None, url=None, key=None)
        return await self._form_act(request, form, row, "invoice", invoice_change(row.ref, body))

    async def tracking(self, request: Request) -> Response:
        form = await posted(request)
        row = await self.row_of(request)
        tracking = {
            "trackingNumber": (form.get("trackingNumber") or "").strip(),
            "courier": form.get("courier") or None,
        }
        problems = tracking_problems(tracking)
        if problems:
            said = OperationError("; ".join(f"{field}: {message}" for field, message in problems))
            return await self._form_act(request, form, row, "tracking", said)
        number = (form.get("invoiceNumber") or "").strip() or None
        return await self._form_act(
            request, form, row, "tracking", tracking_change(row.ref, tracking, number)
        )

    async def return_(self, request: Request) -> Response:
        form = await posted(request)
        row = await self.row_of(request)
        number, value = (form.get("number") or "").strip(), (form.get("value") or "").strip()
        if not number or not value.isdigit():
            missing = OperationError("number, value: give the return invoice's number and its value in cents")
            return await self._form_act(request, form, row, "return", missing)
        body = return_from_options(row, number, int(value), issued_at=None)
        return await self._form_act(request, form, row, "return", return_change(row.ref, body))

    async def _act(self, request: Request, row: OrderRow, change: Any) -> Response:
        outcome = await reconciling_first(
            self.settings, self.store, self.clients, row.ref, change, actor=caller_of(request).actor
        )
        return _back(request, row, outcome.message)

    async def _form_act(
        self, request: Request, form: QueryParams, row: OrderRow, name: str, change: Any
    ) -> Response:
        """A form of the order's page: done, or refused and shown again as typed with the reason
        (which names the field: `invoiceValue`, `items`, a tracking field, ...)."""
        try:
            if isinstance(change, OrchestratorError):
                raise change
            return await self._act(request, row, change)
        except (OperationError, UsageError) as exc:
            if isinstance(exc, NoSuchOrder) or exc.serve_status not in (400, 409, 422):
                raise
            refused = {"form": name, "problem": str(exc), "typed": dict(form.items())}
            return await self._order_page(request, row, refused, exc.serve_status)


class Pages:
    """A group of the console's pages beside `Console` (orders, accounts, repair): they render and
    answer through it, and read its settings and store."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.settings = console.settings
        self.store = console.store


async def _form(request: Request) -> QueryParams:
    """A urlencoded form, bounded (a few fields, or the orders ticked on one page of the list;
    a repaired order's body)."""
    raw = await read_body(request, FORM_LIMIT)
    return QueryParams(raw.decode("utf-8", "replace"))


async def posted(request: Request) -> QueryParams:
    """The posted form, if it carries this session's CSRF token (FormRefused if not)."""
    form = await _form(request)
    if not session.csrf_ok(request.cookies.get(session.COOKIE, ""), form.get("csrf")):
        raise FormRefused(
            "this form is stale or came from another site (no valid CSRF token); nothing was done"
        )
    return form


def _local(target: str | None) -> str:
    """Where to go after logging in: a path of this server only (never another site's URL)."""
    if not target:
        return "/"
    parts = urlsplit(target)
    if (
        parts.scheme
        or parts.netloc
        or not parts.path.startswith("/")
        or parts.path.startswith("//")
        or "\\" in target
    ):
        return "/"
    return parts.path + (f"?{parts.query}" if parts.query else "")


def _back(request: Request, row: OrderRow, message: str) -> Response:
    """Back to the order's page, with `message` in its banner."""
    return signed_redirect(request, order_href(row.order_id, row.account), message)


def signed_redirect(request: Request, href: str, message: str) -> Response:
    """To `href` after an action, with `message` for its banner, signed for this session."""
    joiner = "&" if "?" in href else "?"
    signature = session.sign(request.cookies.get(session.COOKIE, ""), message)
    return RedirectResponse(f"{href}{joiner}done={quote(message)}&sig={signature}", status_code=303)


def banner(request: Request) -> str | None:
    """The success message to show: only one this server signed for this session (`?done=`
    alone, from a link someone else made, shows nothing)."""
    message = request.query_params.get("done")
    if message is None or not session.signed_ok(
        request.cookies.get(session.COOKIE, ""), message, request.query_params.get("sig")
    ):
        return None
    return message


def _fix_link(entry: Mapping[str, Any], caller: Caller) -> dict[str, Any]:
    """The stuck list's button: the action the diagnosis names, where this user may take it."""
    fix, order_id, account = entry.get("fix"), entry["orderId"], entry.get("account")
    links = {
        "retry": (OPERATE, "Retry…", order_href(order_id, account, "/confirm/retry")),
        "cancel": (OPERATE, "Cancel…", order_href(order_id, account, "/confirm/cancel")),
        "repair": (PUSH, "Repair…", order_href(order_id, account, "/repair")),
        "invoice": (PUSH, "Attach invoice…", order_href(order_id, account) + "#invoice"),
        "resume": (OPERATE, "Resume account…", "/accounts"),
    }
    if fix not in links or not caller.may(links[fix][0]):
        return {"action": None}
    _, label, href = links[fix]
    return {"action": fix, "action_label": label, "action_href": href}


def waiting_for(row: OrderRow) -> str:
    """What the order waits for, as a page says it. A failed order waits for nothing but a
    person: its reason is the last error, and what fixes it is the diagnosis beside it with its
    button, not the terminal command the planner's wait reason points to."""
    if row.state == "failed":
        return row.needs_attention or ""
    return row.wait_reason or row.needs_attention or ""


def offered(row: OrderRow, fix: str | None) -> list[str]:
    """The buttons of an order's page: what its state allows, less a retry that would fail the
    same way (the diagnosis names another fix: a repair, a cancel)."""
    actions = operator_actions(row.state)
    if fix in ("repair", "cancel") and "retry" in actions:
        actions = [a for a in actions if a != "retry"]
    return actions


def _facts(row: OrderRow, now: datetime, currency: str) -> list[tuple[str, Any]]:
    name = customer_name(row.place_body)
    since = Markup("{} since {} ({} ago)").format(
        row.state, when(row.state_changed_at), format_duration(now - row.state_changed_at)
    )
    return [
        ("account", row.account),
        ("affiliate / marketplace id", f"{row.affiliate_id} / {row.marketplace_order_id}"),
        ("customer", name or "-"),
        ("state", since),
        ("value", money(row.target_value, currency)),
        ("invoices", invoicing.summary(row, currency)),
        ("tracking", row.tracking_number or "-"),
        ("last VTEX status", row.vtex_status or "-"),
        ("attempts", row.attempts),
        ("last error", row.last_error or "-"),
        ("waiting for", waiting_for(row) or "-"),
        ("open intent", row.intent or "-"),
    ]
