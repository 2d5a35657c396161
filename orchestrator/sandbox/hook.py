"""The Orders Hook, as VTEX documents it (Orders API "Hook"; the Orders Feed guide): what it keeps.

One hook per app key (here: per sandbox account). `POST /api/orders/hook/config {filter, hook:
{url, headers}}` is refused (400) unless the URL answers VTEX's ping, `{"hookConfig": "ping"}`,
with 200; from then on every status change the filter lets through becomes a notification

    {Domain, OrderId, State, LastState, LastChange, CurrentChange, Origin: {Account, Key}}

POSTed to the URL with the configured headers. A delivery not answered 200 within 5 s is tried
again on a geometric progression, and given up after 100 tries or 4 days. A hook no notification
reached for 3 days is deleted. The HTTP side (the ping, the deliveries) is
`orchestrator.sandbox.hook_sender`'s; this module only decides what is due, so a clock drives it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from orchestrator.sandbox.feed import iso
from orchestrator.sandbox.filters import filter_refusal, idle_too_long, kept, lets_through

DEADLINE_SECONDS = 5.0  # VTEX's: a notification not answered 200 by then failed
MAX_TRIES = 100
GIVE_UP_AFTER = 4 * 86_400.0  # "more than 100 times, 4 days progressively"
IDLE_DELETION = 3 * 86_400.0  # "deleted after 3 days without notifications"
FIRST_RETRY = 1.0  # seconds; doubled at each failure
LONGEST_RETRY = 3_600.0


@dataclass
class Notification:
    body: dict[str, Any]
    created_at: float
    tries: int = 0
    due_at: float = 0.0
    last_error: str | None = None


@dataclass
class HookFaults:
    """Deliveries answered as failed without being sent, with this probability (`lose`): the
    orchestrator must not depend on every push arriving."""

    lose: float = 0.0


@dataclass
class Hook:
    clock: Callable[[], float]
    account: str
    app_key: str
    config: dict[str, Any] | None = None
    configured_at: float = 0.0
    last_notified_at: float | None = None
    outbox: list[Notification] = field(default_factory=list)
    faults: HookFaults = field(default_factory=HookFaults)
    delivered: int = 0
    failed_tries: int = 0
    given_up: int = 0
    pings: int = 0

    # -- configuration -------------------------------------------------------------------------

    @staticmethod
    def refusal(body: Any) -> str | None:
        """Why VTEX would refuse this configuration (before pinging), or None."""
        if not isinstance(body, Mapping):
            return "Invalid request body: expected {filter, hook}"
        flt, hook = body.get("filter"), body.get("hook")
        refusal = filter_refusal(flt)
        if refusal is not None:
            return refusal
        if not isinstance(hook, Mapping) or not isinstance(hook.get("url"), str):
            return "hook.url is required"
        headers = hook.get("headers", {})
        if not isinstance(headers, Mapping) or not all(isinstance(v, str) for v in headers.values()):
            return "hook.headers must be an object of strings"
        return None

    def configure(self, body: Mapping[str, Any]) -> None:
        """Set a configuration whose URL answered the ping."""
        hook = body["hook"]
        self.config = {
            "filter": kept(body["filter"]),
            "hook": {"url": hook["url"], "headers": dict(hook.get("headers") or {})},
        }
        self.configured_at = self.clock()
        self.outbox.clear()

    def view(self) -> dict[str, Any] | None:
        return self.config if self._alive() else None

    def delete(self) -> bool:
        existed = self.config is not None
        self.config = None
        self.outbox.clear()
        return existed

    def _alive(self) -> bool:
        if self.config is None:
            return False
        if idle_too_long(self.last_notified_at, self.configured_at, self.clock(), IDLE_DELETION):
            self.delete()
            return False
        return True

    # -- notifications --------------------------------------------------------------------------

    def status_changed(
        self, order_id: str, last_state: str | None, state: str, last_change: float, at: float
    ) -> None:
        if not self._alive():
            return
        assert self.config is not None
        if not lets_through(self.config["filter"], last_state, state):
            return
        body = {
            "Domain": "Fulfillment",
            "OrderId": order_id,
            "State": state,
            "LastState": last_state,
            "LastChange": iso(last_change),
            "CurrentChange": iso(at),
            "Origin": {"Account": self.account, "Key": self.app_key},
        }
        self.outbox.append(Notification(body, created_at=at, due_at=self.clock()))

    def due(self) -> list[Notification]:
        """Notifications to send now (deliveries run concurrently; each is out of the outbox
        until it is answered)."""
        if not self._alive():
            return []
        now = self.clock()
        ready = [n for n in self.outbox if n.due_at <= now]
        for n in ready:
            n.due_at = float("inf")  # in flight
        return ready

    def answered(self, notification: Notification, ok: bool, error: str | None = None) -> None:
        """The outcome of one delivery: done, or due again later (geometric), or given up."""
        now = self.clock()
        if ok:
            self.delivered += 1
            self.last_notified_at = now
            self._drop(notification)
            return
        self.failed_tries += 1
        notification.tries += 1
        notification.last_error = error
        if notification.tries >= MAX_TRIES or now - notification.created_at > GIVE_UP_AFTER:
            self.given_up += 1
            self._drop(notification)
            return
        notification.due_at = now + min(LONGEST_RETRY, FIRST_RETRY * 2 ** (notification.tries - 1))

    def _drop(self, notification: Notification) -> None:
        self.outbox = [n for n in self.outbox if n is not notification]

    @property
    def headers(self) -> dict[str, str]:
        assert self.config is not None
        return dict(self.config["hook"]["headers"])

    @property
    def url(self) -> str:
        assert self.config is not None
        return str(self.config["hook"]["url"])

    def counts(self) -> dict[str, Any]:
        return {
            "configured": self.config is not None,
            "config": self.config,
            "pending": len(self.outbox),
            "delivered": self.delivered,
            "failedTries": self.failed_tries,
            "givenUp": self.given_up,
            "pings": self.pings,
            "lastErrors": [n.last_error for n in self.outbox if n.last_error][:5],
        }
