"""`check` and `show --vtex`: what the settings lead to (the database, VTEX's answer to a harmless
read), said plainly, and VTEX's view of one order. Nothing is created or changed."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from orchestrator.config.account_tables import AccountSettings
from orchestrator.config.checks import ConfigurationError
from orchestrator.config.settings import Settings
from orchestrator.ops.pause import active_pause, probe_credentials
from orchestrator.redaction import mask_url
from orchestrator.store.dialects import create_db_engine
from orchestrator.store.errors import explain
from orchestrator.store.migrate import current_revision, head_revision
from orchestrator.vtex.client import VtexClient
from orchestrator.vtex.errors import VtexError


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
    return results


def vtex_label(account: str, accounts: int) -> str:
    """How `check` names an account's line: `VTEX`, or `VTEX acme-br` when there are several."""
    return "VTEX" if accounts == 1 else f"VTEX {account}"
