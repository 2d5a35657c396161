"""The Orders Hook's HTTP side: VTEX's ping when a hook is configured, and the deliveries.

The sandbox otherwise computes time-driven moves only when asked (a read), so nothing would ever
push the end of a grace period. While any account has a hook, `HookSender` ticks: it advances
every order's timers, as VTEX's own do, and POSTs each due notification to the hook's URL with
its headers, a 5 s deadline, and the answer given to `Hook.answered` (retried on a geometric
progression when not 200).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Callable, Iterable
from typing import Any

import httpx

from orchestrator.sandbox.hook import DEADLINE_SECONDS, Hook, Notification
from orchestrator.sandbox.oms import Reply, SandboxOms, error_reply

PING = {"hookConfig": "ping"}
TICK_SECONDS = 0.2


async def configure(oms: SandboxOms, payload: Any) -> Reply:
    """`POST /api/orders/hook/config`: refused (400) unless the URL answers the ping with 200."""
    refusal = Hook.refusal(payload)
    if refusal is not None:
        return error_reply(409 if refusal.startswith("CONFLICT") else 400, "SBX-INVALID-BODY", refusal)
    hook = payload["hook"]
    oms.hook.pings += 1
    failure = await _post(str(hook["url"]), dict(hook.get("headers") or {}), PING)
    if failure is not None:
        return error_reply(400, "SBX-HOOK-PING", f"The hook URL did not answer the ping with 200: {failure}")
    oms.hook.configure(payload)
    return Reply(200)


async def _post(
    url: str, headers: dict[str, str], body: Any, client: httpx.AsyncClient | None = None
) -> str | None:
    """POST `body`; None when answered 200 within VTEX's deadline, else what went wrong."""
    try:
        if client is None:
            async with httpx.AsyncClient(timeout=DEADLINE_SECONDS) as own:
                response = await own.post(url, json=body, headers=headers)
        else:
            response = await client.post(url, json=body, headers=headers)
    except httpx.HTTPError as exc:
        return f"{type(exc).__name__}: {exc}"[:200]
    if response.status_code != 200:
        return f"HTTP {response.status_code}"
    return None


class HookSender:
    """Ticks while the sandbox serves: timers, then deliveries, for every account's hook."""

    def __init__(self, accounts: Callable[[], Iterable[SandboxOms]], seed: int = 0) -> None:
        self._accounts = accounts
        self._rng = random.Random(seed)
        self._tasks: set[asyncio.Task[None]] = set()

    async def run(self) -> None:
        async with httpx.AsyncClient(timeout=DEADLINE_SECONDS) as client:
            try:
                while True:
                    self.tick(client)
                    await asyncio.sleep(TICK_SECONDS)
            finally:
                for task in self._tasks:
                    task.cancel()
                with contextlib.suppress(Exception):
                    await asyncio.gather(*self._tasks, return_exceptions=True)

    def tick(self, client: httpx.AsyncClient) -> None:
        for oms in self._accounts():
            if oms.hook.config is None:
                continue
            oms.advance_all()
            for notification in oms.hook.due():
                task = asyncio.create_task(self._deliver(oms.hook, notification, client))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    async def _deliver(self, hook: Hook, notification: Notification, client: httpx.AsyncClient) -> None:
        if hook.config is None:  # deleted meanwhile
            return
        if hook.faults.lose and self._rng.random() < hook.faults.lose:
            hook.answered(notification, ok=False, error="lost (the sandbox's fault option)")
            return
        failure = await _post(hook.url, hook.headers, notification.body, client)
        hook.answered(notification, ok=failure is None, error=failure)
