"""`check` and `show --vtex`: what the settings lead to (the database, VTEX's answer to a harmless
read, the License Manager resource of each kind of call), said plainly, and VTEX's view of one
order. Nothing is created or changed."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from orchestrator.config.account_tables import AccountSettings
from orchestrator.config.checks import ConfigurationError
from orchestrator.config.settings import Settings
from orchestrator.engine.clients import build_client
from orchestrator.engine.feed import configured_as_needed
from orchestrator.ops.pause import PROBE_ORDER, active_pause, probe_credentials
from orchestrator.redaction import mask_url
from orchestrator.store.dialects import create_db_engine
from orchestrator.store.errors import explain
from orchestrator.store.migrate import current_revision, head_revision
from orchestrator.vtex import hook
from orchestrator.vtex.client import VtexClient
from orchestrator.vtex.errors import AuthError, MissingPermission, VtexError
from orchestrator.vtex.permissions import FULFILLMENT, RESOURCES, operations_needing
from states import vtex_status

# One harmless call per License Manager resource, on an order VTEX never has: VTEX checks the
# permission before it looks for the order, so a 403 says the resource is missing and any other
# answer (404 above all) says it is there. Place is never probed (Authorize dispatch answers for
# the fulfillment calls): even a refused Place is not a call to make for a check.
_PROBE_AFFILIATE = "CHK"
_PROBES: dict[str, Callable[[VtexClient], Awaitable[Any]]] = {
    FULFILLMENT: lambda c: c.authorize_dispatch(_PROBE_AFFILIATE, PROBE_ORDER),
    "View order": lambda c: c.get_order(PROBE_ORDER),
    "Change order workflow status": lambda c: c.start_handling(PROBE_ORDER),
    "Notify invoice": lambda c: c.send_invoice(
        PROBE_ORDER,
        {
            "type": "Output",
            "invoiceNumber": "0",
            "invoiceValue": 1,
            "issuanceDate": "2000-01-01T00:00:00Z",
            "items": [],
        },
    ),
    "Cancel order": lambda c: c.cancel_order(PROBE_ORDER, "permission check"),
}


@dataclass(frozen=True)
class PermissionProbe:
    """What VTEX answered to the harmless call of one resource."""

    resource: str
    granted: bool | None  # None: the probe could not tell (VTEX unreachable, credentials refused)
    said: str


async def probe_permissions(settings: Settings, account: AccountSettings) -> list[PermissionProbe]:
    """Each License Manager resource the flow needs, probed with one harmless call."""
    async with build_client(settings, account) as client:
        return [await _probe(client, resource) for resource in RESOURCES]


async def _probe(client: VtexClient, resource: str) -> PermissionProbe:
    calls = ", ".join(operations_needing(resource))
    try:
        status = (await _PROBES[resource](client)).http_status
    except MissingPermission as exc:
        return PermissionProbe(
            resource,
            False,
            f"{resource!r} missing: VTEX answered 403 ({exc.message}); {calls} would wait. "
            "Grant it to the app key's role in VTEX Admin (Account settings > Roles)",
        )
    except VtexError as exc:
        if isinstance(exc, AuthError) or exc.http_status is None or exc.http_status >= 500:
            return PermissionProbe(resource, None, f"{resource!r} not checked: {exc.describe()}")
        status = exc.http_status  # refused for the made-up order, not for the permission
    return PermissionProbe(
        resource, True, f"{resource!r} granted ({calls}: HTTP {status} to a harmless probe)"
    )


@dataclass(frozen=True)
class VtexView:
    order: dict[str, Any] | None
    error: str | None


async def vtex_view(client: VtexClient, account: AccountSettings, store: Any, order_id: str) -> VtexView:
    """VTEX's view of one order for `show --vtex`, the API and the console (`client` is the
    account's), unless the account is paused: then VTEX is not asked, and the view says why."""
    pause = await asyncio.to_thread(active_pause, account, store)
    if pause is not None:
        return VtexView(None, f"not asked: the account is paused ({pause.reason})")
    try:
        call = await client.get_order(order_id)
    except VtexError as exc:
        return VtexView(None, exc.describe())
    if call.body is None:
        return VtexView(None, f"VTEX has no order {order_id} (HTTP {call.http_status})")
    return VtexView(call.body if isinstance(call.body, dict) else None, None)


async def check_setup(settings: Settings) -> list[tuple[str, bool, str]]:
    """The database, then the VTEX credentials with one harmless read (a Get order VTEX answers 404 to).

    Nothing is created or migrated: `check` says what is there."""
    results: list[tuple[str, bool, str]] = []
    where = mask_url(settings.database_url)
    try:
        engine, hooks = create_db_engine(settings.database_url, create=False)
        try:
            revision = current_revision(engine)
        finally:
            engine.dispose()
        head = head_revision()
        if revision == head:
            results.append(
                ("database", True, f"{hooks.name} at {where} reachable, schema at revision {revision}")
            )
        elif revision is None:
            results.append(
                ("database", False, f"{where} holds no orchestrator tables (`orchestrator migrate`)")
            )
        else:
            results.append(
                (
                    "database",
                    False,
                    f"schema at revision {revision}, this version needs {head} (`orchestrator migrate`)",
                )
            )
    except Exception as exc:  # any failure is the answer to "does the database work?"
        results.append(("database", False, explain(exc)))
    accounts = settings.all_accounts
    for name, account in accounts.items():
        label = vtex_label(name, len(accounts))
        try:
            probe = await probe_credentials(settings, account)
        except ConfigurationError as exc:
            results.append((label, False, str(exc)))
            continue
        results.append((label, probe.accepted, probe.said()))
        if probe.accepted:
            for permission in await probe_permissions(settings, account):
                results.append((f"{label} permission", permission.granted is not False, permission.said))
            if account.status_source != "poll":
                results.append((f"{label} feed", *await feed_seen(settings, account)))
    return results


async def feed_seen(settings: Settings, account: AccountSettings) -> tuple[bool, str]:
    """An account that listens: its Orders Feed as VTEX has it (configured as the engine needs it,
    items waiting, the oldest's age), and its Hook where it has one; reads, never a change. Left
    on `auto`, an account that will poll (the key may not read the feed, or another integration
    configured it) is fine, and the line says why."""
    auto = account.status_source == "auto"
    async with build_client(settings, account) as client:
        try:
            config = (await client.feed_config()).body
            hook_config = (await client.hook_config()).body if account.status_source == "hook" else None
        except MissingPermission as exc:
            return auto, (
                f"the app key lacks {exc.resource!r}: the account's orders are looked at by polling "
                "(grant it, with a key of its own: one feed per app key)"
            )
        except VtexError as exc:
            return False, f"cannot read the feed's configuration: {exc.describe()}"
        secret = client.hook_secret(account.key)
    if config is None:
        said = "no feed configured yet: the first daemon configures it"
    elif not configured_as_needed(config) and auto:
        return (
            True,
            "configured by another integration: status_source = auto polls (set feed to take it over)",
        )
    else:
        shape = "configured as the engine needs" if configured_as_needed(config) else "configured otherwise"
        said = (
            f"{shape}; {config.get('quantity')} item(s) waiting, the oldest "
            f"{config.get('approximateAgeOfOldestMessageInSeconds')}s old"
        )
    if account.status_source == "hook" and account.hook_url:
        url = hook.hook_url(account.hook_url, account.name)
        wanted = hook.configuration(url, secret, vtex_status.FEED_STATUSES)
        if hook_config is None:
            said += f"; no Hook yet (a daemon sets it to {url})"
        elif hook.configured_as_needed(hook_config, wanted):
            said += f"; the Hook pushes to {url}"
        else:
            said += f"; the Hook is set otherwise (a daemon sets it to {url})"
    return True, said


def vtex_label(account: str, accounts: int) -> str:
    """How `check` names an account's line: `VTEX`, or `VTEX acme-br` when there are several."""
    return "VTEX" if accounts == 1 else f"VTEX {account}"
