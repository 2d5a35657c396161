"""The console's accounts page: each configured account by its name, its orders per state, and
its pause, with the buttons `orchestrator pause --account` and `resume --account` are.

A pause made here is the same stored pause the CLI makes (`ops.pause.pause_account`): every daemon
sharing the database reads it within seconds and sends nothing more for that account. Resuming a
pause VTEX caused (rejected credentials) first asks VTEX, as `resume` does; resuming an
operator's pause does not, since the credentials were never why it stopped.
"""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from orchestrator.config.account_tables import AccountSettings
from orchestrator.errors import NotFound, OperationError
from orchestrator.ops.pause import (
    active_pause,
    is_operator_pause,
    lift,
    pause_account,
    probe_credentials,
)
from orchestrator.web.auth import OPERATE
from orchestrator.web.console import Pages, banner, posted, signed_redirect
from orchestrator.web.http import caller_of
from states import ORDERED_STATES


class AccountsPages(Pages):
    async def accounts(self, request: Request) -> Response:
        counts = await run_in_threadpool(self.store.account_state_counts)
        rows = []
        for name, account in self.settings.all_accounts.items():
            pause = await run_in_threadpool(active_pause, account, self.store)
            rows.append(
                {
                    "name": name,
                    "vtex": account.vtex_account or "a VTEX-compatible URL (the sandbox)",
                    "currency": account.currency,
                    "source": account.status_source,
                    "counts": {str(s): counts.get(name, {}).get(str(s), 0) for s in ORDERED_STATES},
                    "pause": pause,
                    "by_operator": pause is not None and is_operator_pause(pause),
                }
            )
        return self.console.page(
            request,
            "accounts.html",
            title="Accounts",
            accounts=rows,
            states=[str(s) for s in ORDERED_STATES],
            may_operate=caller_of(request).may(OPERATE),
            message=banner(request),
        )

    def _account(self, request: Request) -> tuple[str, AccountSettings]:
        name = request.path_params["name"]
        account = self.settings.all_accounts.get(name)
        if account is None:
            raise NotFound(f"no account {name!r} is configured")
        return name, account

    async def pause(self, request: Request) -> Response:
        form = await posted(request)
        name, account = self._account(request)
        caller = caller_of(request)
        reason = (form.get("reason") or "").strip()
        held = await run_in_threadpool(active_pause, account, self.store)
        if held is not None and is_operator_pause(held):
            return signed_redirect(request, "/accounts", f"account {name} was already paused ({held.reason})")
        made = await run_in_threadpool(pause_account, account, self.store, caller.actor, reason)
        self.console.log.warning("account paused", account=name, by=caller.name, reason=made.reason)
        return signed_redirect(
            request, "/accounts", f"account {name} paused: every daemon stops sending to VTEX within seconds"
        )

    async def resume(self, request: Request) -> Response:
        await posted(request)
        name, account = self._account(request)
        caller = caller_of(request)
        held = await run_in_threadpool(active_pause, account, self.store)
        if held is None:
            return signed_redirect(request, "/accounts", f"account {name} was not paused")
        if not is_operator_pause(held):
            probe = await probe_credentials(self.settings, account)
            if not probe.accepted:
                raise OperationError(f"account {name}: {probe.said(again=True)}; the pause stays")
        await run_in_threadpool(lambda: lift(account, self.store, operator=True))
        self.console.log.info("account resumed", account=name, by=caller.name, was=held.reason)
        return signed_redirect(
            request, "/accounts", f"account {name} resumed ({held.reason}): its orders go on within seconds"
        )
