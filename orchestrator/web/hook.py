"""`POST /vtex/hook/{account}`: where VTEX's Hook pushes an account's status changes
(`status_source = hook`; the daemon keeps the Hook configured, `orchestrator.engine.feed`).

VTEX signs nothing, so a notification is taken only when it carries the secret header the daemon
configured (derived from the account's app token: `orchestrator.vtex.hook.secret`) and its
`Origin` names this account and its app key. It then goes into the same inbox as the feed's
items, once per change, and the orders it concerns become due, all before the 200 that VTEX
expects within 5 s; anything else is answered so that VTEX tries again later, and the feed,
still read as a backup, delivers the change anyway. VTEX's `{"hookConfig": "ping"}`, sent when
the Hook is configured, is answered 200 at once.

A notification only makes an order look at what it already would: it can never move an order
backwards (the inbox's rules), so one that got through with a stolen secret could at most cost
an early Get order.
"""

from __future__ import annotations

import hmac
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from orchestrator.clock import utcnow
from orchestrator.config.account_tables import AccountError, AccountSettings
from orchestrator.config.settings import Settings
from orchestrator.errors import OrchestratorError
from orchestrator.log import get_logger
from orchestrator.redaction import register_secret
from orchestrator.store.errors import explain
from orchestrator.store.store import Store
from orchestrator.vtex import hook
from orchestrator.web.bodies import json_body, read_body
from orchestrator.web.http import error

MAX_NOTIFICATION_BYTES = 64 * 1024  # a notification is a few hundred bytes


def hook_route(settings: Settings, store: Store) -> Route:
    log = get_logger(component="serve")

    async def receive(request: Request) -> Response:
        name = str(request.path_params["account"])
        account = settings.all_accounts.get(name)
        if account is None or account.status_source != "hook":
            return error(404, f"no account {name!r} listens to VTEX's Hook here")
        try:
            body = json_body(await read_body(request, MAX_NOTIFICATION_BYTES))
        except OrchestratorError as exc:
            return error(exc.serve_status, str(exc))
        if hook.is_ping(body):
            return JSONResponse({"hookConfig": "pong"})
        credentials = _credentials(account)  # the files read once per notification
        if not _secret_matches(account, credentials, request.headers.get(hook.SECRET_HEADER)):
            log.warning("a Hook notification without the account's secret refused", account=name)
            return error(401, f"the {hook.SECRET_HEADER} header is missing or wrong")
        try:
            item = hook.notification_item(body)
        except hook.NotVtexNotification as exc:
            return error(400, f"not a notification of VTEX's Hook: {exc}")
        refusal = _origin_refusal(account, credentials, body)
        if refusal is not None:
            log.warning("a Hook notification from elsewhere refused", account=name, why=refusal)
            return error(403, refusal)
        try:
            woken = await run_in_threadpool(_keep, store, account, item)
        except Exception as exc:  # VTEX tries again; the feed has it too
            log.error("a Hook notification could not be kept; VTEX will send it again", error=explain(exc))
            return error(503, "the notification could not be kept now", headers={"Retry-After": "5"})
        log.debug("VTEX's Hook", account=name, order=item["orderId"], state=item["state"], woken=woken)
        return JSONResponse({"received": True})

    return Route("/vtex/hook/{account}", receive, methods=["POST"])


def _keep(store: Store, account: AccountSettings, item: dict[str, Any]) -> int:
    now = utcnow()
    store.save_feed_items(account.key, [item], now)
    store.note_hook_event(account.key, now)
    return store.apply_feed_events(account.key, account.name, now)


def _credentials(account: AccountSettings) -> list[tuple[str, str]]:
    """The app key and token serve started with, and those its credential files hold now (rotated
    since): the daemon configures the Hook with the secret of the token it uses."""
    pairs = []
    if account.app_key is not None and account.app_token is not None:
        pairs.append((account.app_key.get_secret_value(), account.app_token.get_secret_value()))
    if account.credentials.rereadable:
        try:
            key, token = account.credentials.read()
        except AccountError:
            return pairs
        pairs.append((key.get_secret_value(), token.get_secret_value()))
    return pairs


def _same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode(), expected.encode())


def _secret_matches(account: AccountSettings, credentials: list[tuple[str, str]], given: str | None) -> bool:
    if not given:
        return False
    secrets = [hook.secret(token, account.key) for _, token in credentials]
    for value in secrets:
        register_secret(value)  # masked in anything shown, as the token is
    return any(_same(given, value) for value in secrets)


def _origin_refusal(account: AccountSettings, credentials: list[tuple[str, str]], body: Any) -> str | None:
    """Why the notification's `Origin` is not this account's (None: it is)."""
    origin_account, origin_key = hook.origin(body)
    if account.vtex_account and origin_account != account.vtex_account:
        return f"Origin.Account is not {account.vtex_account!r}"
    if not origin_key or not any(_same(origin_key, key) for key, _ in credentials):
        return "Origin.Key is not the account's app key"
    return None
