"""The account pause, from the operator's side: every CLI call to VTEX respects it, and it is
lifted as soon as VTEX is seen to accept the credentials again (`check`, `resume`, a daemon's
start), not five minutes later.

The pause is a row in `vtex_accounts`; running daemons read it again every few seconds, so lifting
it here resumes them too.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta

from orchestrator.clock import utcnow
from orchestrator.config.account_tables import AccountSettings, CredentialSource
from orchestrator.config.settings import Settings
from orchestrator.durations import format_duration
from orchestrator.engine.clients import build_client
from orchestrator.errors import OperationError
from orchestrator.store.store import Store
from orchestrator.vtex.errors import AuthError, MissingPermission, VtexError
from orchestrator.vtex.pauses import OPERATOR_PAUSE, AccountPause

PROBE_ORDER = "orchestrator-check-0"  # an order id VTEX never has: its Get is harmless
# An operator's pause is the same stored pause as VTEX's (so every daemon honours it within
# seconds, as it does a credentials pause), marked by its reason (`OPERATOR_PAUSE`) and held until
# someone resumes it: neither a daemon's start nor `check` lifts it when VTEX accepts the
# credentials, since the credentials were never why it was paused.
UNTIL_RESUMED = timedelta(days=3650)


class AccountPaused(OperationError):
    """A command would call VTEX while the account is paused."""

    exit_code = 7

    def __init__(self, pause: AccountPause, name: str) -> None:
        if is_operator_pause(pause):
            super().__init__(
                f"account {name} is paused ({pause.reason}); nothing was sent. `orchestrator resume "
                f"--account {name}` lifts the pause"
            )
            return
        left = format_duration(pause.until - utcnow())
        super().__init__(
            f"account {name} is paused for {left} more ({pause.reason}); nothing was sent. "
            "Once the cause is fixed, `orchestrator resume` checks the credentials and lifts the pause"
        )


def active_pause(account: AccountSettings, store: Store) -> AccountPause | None:
    pause = store.account_pause(account.key)
    return pause if pause is not None and pause.until > utcnow() else None


def ensure_not_paused(account: AccountSettings, store: Store) -> None:
    pause = active_pause(account, store)
    if pause is not None:
        raise AccountPaused(pause, account.name)


def ensure_orders_not_paused(settings: Settings, store: Store, refs: Iterable[str]) -> None:
    """Refuse a command whose orders belong to a paused account, before anything changes. With
    one account that is one read; with several, each order's account is looked up."""
    accounts = settings.all_accounts
    if len(accounts) == 1:
        ensure_not_paused(next(iter(accounts.values())), store)
        return
    names = set()
    for ref in refs:
        try:
            row = store.find(ref)
        except OperationError:
            continue  # an id several accounts hold: the command itself says so
        if row is not None:
            names.add(row.account)
    for name in sorted(names):
        if name in accounts:
            ensure_not_paused(accounts[name], store)


@dataclass(frozen=True)
class Probe:
    """What one harmless read told of the credentials (`check`, `resume`, a daemon's start)."""

    base_url: str
    accepted: bool
    http_status: int | None
    problem: str | None = None  # VTEX could not be used at all (not a verdict on the credentials)

    def said(self, *, again: bool = False) -> str:
        """In words; `again` when a pause is already there (VTEX *still* rejects them)."""
        if self.problem is not None:
            return f"cannot use {self.base_url}: {self.problem}"
        if self.accepted:
            return f"{self.base_url} accepts the credentials (HTTP {self.http_status})"
        verb = "still rejects" if again else "rejected"
        return f"{self.base_url} {verb} the credentials (HTTP {self.http_status})"


async def probe_credentials(settings: Settings, account: AccountSettings) -> Probe:
    """One harmless read (a Get order VTEX answers 404 to)."""
    async with build_client(settings, account) as client:
        try:
            call = await client.get_order(PROBE_ORDER)
        except AuthError as exc:
            return Probe(account.base_url, False, exc.http_status)
        except MissingPermission as exc:
            # The key is known (a 401 would say otherwise); it lacks View order, which `check`
            # names on its permission lines.
            return Probe(account.base_url, True, exc.http_status)
        except VtexError as exc:
            return Probe(account.base_url, False, None, exc.describe())
    return Probe(account.base_url, True, call.http_status)


def is_operator_pause(pause: AccountPause) -> bool:
    return pause.by_operator


def pause_account(account: AccountSettings, store: Store, actor: str, reason: str) -> AccountPause:
    """Stop every daemon's work for the account until someone resumes it (calls in flight end
    as they would; nothing new is sent)."""
    now = utcnow()
    why = reason.strip() or "no reason given"
    pause = AccountPause(account.key, now + UNTIL_RESUMED, f"{OPERATOR_PAUSE}{actor}: {why}"[:300], now)
    store.save_account_pause(account.key, pause, now)
    return pause


def lift(account: AccountSettings, store: Store, *, operator: bool = False) -> AccountPause | None:
    """Clear the account's pause; returns the pause that was lifted, if there was one. An
    operator's pause is lifted only when `operator` says a person asked (`resume`)."""
    pause = store.account_pause(account.key)
    if pause is not None and is_operator_pause(pause) and not operator:
        return None
    if pause is not None:
        now = utcnow()
        store.save_account_pause(account.key, None, now)
        store.wake_paused(account.name, now)
    return pause


def how_daemons_resume(credentials: CredentialSource) -> str:
    """What lifting a pause means for running daemons, said truthfully: they read credential
    files again before their next call, but keep the environment they were started with."""
    said = []
    if credentials.files:
        files = " and ".join(str(f) for f in credentials.files)
        said.append(f"running daemons read {files} again and resume within seconds")
    else:
        said.append("running daemons resume within seconds")
    if credentials.variables:
        names = " and ".join(credentials.variables)
        said.append(
            f"{names} cannot change under a running process: if you changed "
            f"{'them' if len(credentials.variables) > 1 else 'it'}, restart the daemons "
            "(a credential given by file is read again without a restart)"
        )
    return "; ".join(said)
