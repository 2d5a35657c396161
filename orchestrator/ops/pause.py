"""The account pause, from the operator's side: every CLI call to VTEX respects it, and it is
lifted as soon as VTEX is seen to accept the credentials again (`check`, `resume`, a daemon's
start), not five minutes later.

The pause is a row in `vtex_accounts`; running daemons read it again every few seconds, so lifting
it here resumes them too.
"""

from __future__ import annotations

from orchestrator.clock import utcnow
from orchestrator.durations import format_duration
from orchestrator.ops.refusal import OperationError
from orchestrator.settings import Settings
from orchestrator.store.store import Store
from orchestrator.vtex.account import AccountPause
from orchestrator.vtex.errors import AuthError, VtexError

PROBE_ORDER = "orchestrator-check-0"  # an order id VTEX never has: its Get is harmless


class AccountPaused(OperationError):
    """A command would call VTEX while the account is paused."""

    def __init__(self, pause: AccountPause) -> None:
        left = format_duration(pause.until - utcnow())
        super().__init__(
            f"VTEX account {pause.account} is paused for {left} more ({pause.reason}); nothing was sent. "
            "Once the cause is fixed, `orchestrator resume` checks the credentials and lifts the pause"
        )


def active_pause(settings: Settings, store: Store) -> AccountPause | None:
    pause = store.account_pause(settings.account_key)
    return pause if pause is not None and pause.until > utcnow() else None


def ensure_not_paused(settings: Settings, store: Store) -> None:
    pause = active_pause(settings, store)
    if pause is not None:
        raise AccountPaused(pause)


async def probe_credentials(settings: Settings) -> tuple[bool, str]:
    """One harmless read (a Get order VTEX answers 404 to): (accepted, what VTEX said)."""
    from orchestrator.wiring import build_client

    async with build_client(settings) as client:
        try:
            call = await client.get_order(PROBE_ORDER)
        except AuthError as exc:
            return False, f"{settings.base_url} still rejects the credentials (HTTP {exc.http_status})"
        except VtexError as exc:
            return False, f"cannot use {settings.base_url}: {exc.describe()}"
    return True, f"{settings.base_url} accepts the credentials (HTTP {call.http_status})"


def lift(settings: Settings, store: Store) -> AccountPause | None:
    """Clear the account's pause; returns the pause that was lifted, if there was one."""
    pause = store.account_pause(settings.account_key)
    if pause is not None:
        store.save_account_pause(settings.account_key, None, utcnow())
    return pause
