"""Running a daemon built from the settings: the one-daemon guard its store needs, the run, and
the clean-up of what it owned. The CLI's `run`, the demo and the tests run the daemon through here."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

import httpx

from orchestrator.clock import utcnow
from orchestrator.config.account_tables import AccountSettings
from orchestrator.config.settings import Settings
from orchestrator.engine.daemon import Daemon
from orchestrator.log import get_logger
from orchestrator.ops.pause import is_operator_pause, lift, probe_credentials
from orchestrator.store.patience import patiently
from orchestrator.store.store import Store
from orchestrator.vtex.client import CallObserver
from orchestrator.vtex.pauses import AccountPause
from orchestrator.wiring import build_daemon


async def run_daemon(
    settings: Settings,
    store: Store,
    *,
    until_done: bool = False,
    transport: httpx.AsyncBaseTransport | None = None,
    install_signals: bool = True,
    on_ready: Callable[[Daemon], object] | None = None,
    observer: CallObserver | None = None,
    clock: Callable[[], datetime] = utcnow,
) -> Daemon:
    """Run the daemon until stopped; returns it so callers can read its counters.

    `clock` is this host's clock (a test can skew it); it is corrected to the database server's
    clock on PostgreSQL."""
    parts = build_daemon(settings, store, transport=transport, observer=observer, clock=clock)
    daemon = parts.daemon
    if daemon.metrics_url is not None:
        get_logger(worker=daemon.config.worker_id).info(
            "metrics served", url=f"{daemon.metrics_url}/metrics", health=f"{daemon.metrics_url}/healthz"
        )
    log = get_logger(worker=daemon.config.worker_id)
    for account in settings.all_accounts.values():
        held = await _lift_a_stale_pause(settings, account, store, log)
        lane = daemon.lanes.get(account.name)
        if lane is not None:
            # The pause still stored (an operator's, one VTEX caused that a probe did not lift),
            # known before the first claim and the feed readers' first round: the daemon's own
            # refresh of the pauses comes only with its first claim round.
            lane.guard.adopt(held)
    if on_ready is not None:
        on_ready(daemon)
    try:
        with store.hooks.single_daemon(store.engine.url) as check:
            daemon.storage_check = check
            await daemon.run(until_done=until_done, install_signals=install_signals)
    finally:
        await parts.close()
    return daemon


async def _lift_a_stale_pause(
    settings: Settings, account: AccountSettings, store: Store, log: Any
) -> AccountPause | None:
    """A daemon (re)started after the credentials were fixed must not sit out the old pause: if
    one is stored, one harmless read tells whether VTEX accepts the credentials now. Returns the
    pause still stored (None once lifted), for the daemon to start with."""
    stored = patiently(lambda: store.account_pause(account.key), what="reading the account's pause", log=log)
    pause = stored if stored is not None and stored.until > utcnow() else None
    if pause is None:
        return stored
    if is_operator_pause(pause):
        log.warning(
            "the account stays paused until an operator resumes it",
            account=pause.account,
            reason=pause.reason,
        )
        return stored
    probe = await probe_credentials(settings, account)
    if probe.accepted:
        patiently(lambda: lift(account, store), what="lifting the account's pause", log=log)
        log.info(
            "VTEX accepts the credentials; account pause lifted at start",
            account=pause.account,
            reason=pause.reason,
        )
        return None
    else:
        log.warning(
            "the account stays paused",
            account=pause.account,
            detail=probe.said(again=True),
            resume_at=pause.until.isoformat(),
        )
    return stored
