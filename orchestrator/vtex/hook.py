"""VTEX's Orders Hook, as its contract stands (Orders API "Hook"; the Orders Feed guide): what we
ask VTEX to push, how we know a push is VTEX's, and what a push says.

`POST /api/orders/hook/config {filter, hook: {url, headers}}` makes VTEX POST every status change
the filter lets through to `url`, with `headers`; VTEX first POSTs `{"hookConfig": "ping"}` there
and refuses the configuration (400) unless that answers 200. A notification is

    {Domain, OrderId, State, LastState, LastChange, CurrentChange, Origin: {Account, Key}}

It carries no signature and no event id. So the configured headers carry a secret only the
orchestrator can compute (`secret`), `Origin` must name the account and its app key, and an event
id is made from what identifies the change (`notification_item`), so that VTEX's retries of one
notification are one inbox row.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

SECRET_HEADER = "X-Orchestrator-Hook-Secret"  # noqa: S105  (a header name, not its value)


def hook_url(public_url: str, account: str) -> str:
    """Where VTEX pushes an account's notifications: `serve`'s public URL and the account's name."""
    return f"{public_url.rstrip('/')}/vtex/hook/{quote(account, safe='')}"


def secret(app_token: str, account_key: str) -> str:
    """The hook's secret header value: derived from the account's app token, so that `serve`
    and the daemon agree on it without another secret to keep, and it changes when the token is
    rotated. The HMAC shows nothing of the token to whoever reads VTEX's hook configuration."""
    mac = hmac.new(app_token.encode(), f"orchestrator vtex hook {account_key}".encode(), hashlib.sha256)
    return mac.hexdigest()


def configuration(url: str, secret_value: str, statuses: tuple[str, ...]) -> dict[str, Any]:
    """The hook configuration the engine needs: the statuses it acts on, pushed to `url`."""
    return {
        "filter": {"type": "FromWorkflow", "status": list(statuses)},
        "hook": {"url": url, "headers": {SECRET_HEADER: secret_value}},
    }


def configured_as_needed(config: Any, wanted: Mapping[str, Any]) -> bool:
    """Whether VTEX's hook configuration is `wanted` (header names compared without case, as HTTP
    does)."""
    if not isinstance(config, Mapping):
        return False
    flt, hook = config.get("filter"), config.get("hook")
    if not isinstance(flt, Mapping) or not isinstance(hook, Mapping):
        return False
    headers = hook.get("headers")
    headers = {str(k).lower(): v for k, v in headers.items()} if isinstance(headers, Mapping) else {}
    want = wanted["hook"]
    return (
        flt.get("type") == "FromWorkflow"
        and set(flt.get("status") or ()) == set(wanted["filter"]["status"])
        and hook.get("url") == want["url"]
        and all(headers.get(k.lower()) == v for k, v in want["headers"].items())
    )


def is_ping(body: Any) -> bool:
    return isinstance(body, Mapping) and body.get("hookConfig") == "ping"


class NotVtexNotification(ValueError):
    """A body that is not a notification of VTEX's hook; the message names the field."""


def notification_item(body: Any) -> dict[str, Any]:
    """A notification as an inbox item, in the feed's shape. The event id is made of the order,
    the state and VTEX's time of the change: VTEX's retries of one notification, and a
    notification whose change the feed also delivered under its own id, apply the same fact."""
    if not isinstance(body, Mapping):
        raise NotVtexNotification("the body is not a JSON object")
    for field in ("OrderId", "State", "CurrentChange"):
        if not isinstance(body.get(field), str) or not body[field]:
            raise NotVtexNotification(f"{field} is missing or not a string")
    change = body["CurrentChange"]
    digest = hashlib.sha256(f"{body['OrderId']}|{body['State']}|{change}".encode()).hexdigest()[:32]
    last = body.get("LastState")
    return {
        "eventId": f"hook-{digest}",
        "orderId": body["OrderId"],
        "state": body["State"],
        "lastState": last if isinstance(last, str) else None,
        "currentChange": change,
    }


def origin(body: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """`Origin.Account` and `Origin.Key` of a notification (None where missing)."""
    found = body.get("Origin")
    if not isinstance(found, Mapping):
        return None, None
    account, key = found.get("Account"), found.get("Key")
    return (account if isinstance(account, str) else None, key if isinstance(key, str) else None)
