"""The status report: counts per state with the age of the oldest order in each, paused accounts,
and the stuck orders, each with its facts, a reason in plain words and a suggested command.

This is the shape of `status --json`, documented in docs/commands.md; keys are only ever added.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import NotRequired

from typing_extensions import TypedDict  # pydantic reads these for the OpenAPI document (3.11)

from orchestrator.config.account_tables import DEFAULT_ACCOUNT
from orchestrator.config.stuck_rules import StuckRules
from orchestrator.ops.stuck import diagnose
from orchestrator.store.daemons import SEEN_WITHIN_SECONDS as SEEN_WITHIN
from orchestrator.store.rows import OrderRow
from orchestrator.store.store import Store
from orchestrator.timefmt import iso
from orchestrator.vtex.permissions import operations_needing
from orchestrator.vtex.recovery import ramp_rate
from states import CANCELED_IN_VTEX, ORDERED_STATES


class StuckEntry(TypedDict):
    """One stuck order: its facts, why in plain words, and the command that usually helps."""

    orderId: str
    account: NotRequired[str]  # with several accounts
    affiliateId: str
    state: str
    since: str
    secondsInState: float
    vtexStatus: str | None
    vtexStatusSeenAt: str | None
    lastError: str | None
    lastErrorCode: str | None
    attempts: int
    nextTryAt: str | None
    waitingFor: str | None
    openIntent: str | None
    reason: str
    suggestion: str
    fix: str | None  # the action that fixes it (`ops.stuck.FIXES`), for the console's button


class Oldest(TypedDict):
    since: str
    ageSeconds: float


class PausedAccount(TypedDict):
    account: str
    pausedUntil: str
    pausedSince: str
    reason: str


class MissingResource(TypedDict):
    """A License Manager resource the account's app key lacks (VTEX answered 403): the calls
    needing it (`calls`) wait; the account's other calls go on."""

    account: str
    resource: str
    calls: list[str]
    refusedCall: str
    since: str
    nextTryAt: str
    message: str


class FeedSeen(TypedDict):
    """An account's Orders Feed as its reading daemon last saw it."""

    account: str
    reader: str | None  # the daemon that holds the lease (None: nobody reads it now)
    readAt: str | None
    lastEventAt: str | None
    configuredAt: str | None
    problem: str | None  # why it cannot be read (the orders are then polled)
    declined: str | None  # `auto` chose polling: why (not a problem)
    hookConfiguredAt: str | None  # VTEX's Hook checked (and set) then; None: no Hook
    lastHookEventAt: str | None
    hookProblem: str | None  # why the Hook cannot be set (the feed goes on)


class Throttle(TypedDict):
    """An account VTEX rate-limited, and where its recovery stands (`orchestrator.vtex.recovery`)."""

    account: str
    phase: str  # paused, probing or ramping
    until: str
    secondsLeft: float
    throttlesInARow: int
    rampRequestsPerSecond: float | None


class RunningDaemon(TypedDict):
    worker: str
    host: str
    pid: int
    version: str
    startedAt: str
    lastSeenAt: str
    stoppedAt: str | None
    running: bool


class StuckThresholds(TypedDict):
    thresholdSeconds: dict[str, float]
    openIntentSeconds: float


class StatusReport(TypedDict):
    """`status --json`, `GET /api/status` and the console's overview; keys are only ever added."""

    generatedAt: str
    counts: dict[str, int]
    oldest: dict[str, Oldest]
    accounts: list[PausedAccount]
    missingPermissions: list[MissingResource]
    feeds: list[FeedSeen]
    throttled: list[Throttle]
    daemons: list[RunningDaemon]
    canceledInVtex: int
    partlyInvoiced: int  # VTEX took some of their invoices, not invoiced yet (`list --partly-invoiced`)
    returned: int  # VTEX took a return of them (`list --returned`)
    stuckRules: StuckThresholds
    stuckTotal: int
    stuck: list[StuckEntry]
    countsByAccount: NotRequired[dict[str, dict[str, int]]]  # with several accounts
    unconfiguredAccounts: NotRequired[dict[str, int]]  # orders of accounts no table configures


def stuck_entry(
    row: OrderRow, now: datetime, rules: StuckRules, grace_period: timedelta, *, with_account: bool = False
) -> StuckEntry:
    diagnosis = diagnose(row, now, rules, grace_period)
    entry = StuckEntry(
        orderId=row.order_id,
        affiliateId=row.affiliate_id,
        state=row.state,
        since=iso(row.state_changed_at),
        secondsInState=round((now - row.state_changed_at).total_seconds(), 1),
        vtexStatus=row.vtex_status,
        vtexStatusSeenAt=iso(row.vtex_status_at),
        lastError=row.last_error,
        lastErrorCode=row.last_error_code,
        attempts=row.attempts,
        nextTryAt=iso(row.next_run_at),
        waitingFor=row.wait_reason,
        openIntent=row.intent,
        reason=diagnosis.reason,
        suggestion=diagnosis.suggestion,
        fix=diagnosis.fix,
    )
    if with_account:
        entry["account"] = row.account
    return entry


def report(
    store: Store,
    now: datetime,
    rules: StuckRules,
    grace_period: timedelta,
    *,
    states: Sequence[str] | None = None,
    affiliate: str | None = None,
    older_than: timedelta | None = None,
    limit: int = 100,
    accounts: Mapping[str, timedelta] | None = None,
    account: str | None = None,
    names: Mapping[str, str] | None = None,
) -> StatusReport:
    """The report. `accounts`: each configured account's grace period (default: one account with
    `grace_period`). With several it adds `countsByAccount` and each stuck order's account;
    `account` narrows the stuck list and the per-account counts to one. `names`: each account's
    name by the key its pauses and budget are kept under (`AccountSettings.key`, a VTEX account
    or, for the sandbox, a URL), so the report names accounts as the configuration does."""
    graces = accounts or {DEFAULT_ACCOUNT: grace_period}
    known = names or {}

    def name(key: str) -> str:
        return known.get(key, key)

    counts = {c.state: c for c in store.state_counts()}
    ordered = [str(s) for s in ORDERED_STATES] + sorted(set(counts) - {str(s) for s in ORDERED_STATES})
    oldest: dict[str, Oldest] = {}
    for state, entry in counts.items():
        if entry.oldest_since is not None:
            age = (now - entry.oldest_since).total_seconds()
            oldest[state] = Oldest(since=iso(entry.oldest_since), ageSeconds=round(age, 1))
    stuck, total = store.stuck(
        now, rules, states=states, affiliate=affiliate, older_than=older_than, limit=limit, account=account
    )
    many = len(graces) > 1
    partly, returned = store.invoicing_counts()
    counts_by_account: dict[str, dict[str, int]] | None = None
    if many:
        stored = store.account_state_counts()
        shown = [account] if account else [*graces, *sorted(set(stored) - set(graces))]
        counts_by_account = {
            name: {state: stored.get(name, {}).get(state, 0) for state in ordered} for name in shown
        }
    made = StatusReport(
        {
            "generatedAt": iso(now),
            "counts": {state: counts[state].count if state in counts else 0 for state in ordered},
            "oldest": oldest,
            "accounts": [
                {
                    "account": name(p.account),
                    "pausedUntil": iso(p.until),
                    "pausedSince": iso(p.since),
                    "reason": p.reason,
                }
                for p in store.account_pauses()
                if p.until > now
            ],
            "missingPermissions": [
                {
                    "account": name(p.account),
                    "resource": p.resource,
                    "calls": operations_needing(p.resource),
                    "refusedCall": p.operation,
                    "since": iso(p.since),
                    "nextTryAt": iso(p.until),
                    "message": p.message,
                }
                for p in store.permission_pauses()
            ],
            "feeds": [
                {
                    "account": f["account"],
                    "reader": f["owner"] if f["lease_until"] and f["lease_until"] > now else None,
                    "readAt": iso(f["read_at"] or f["updated_at"]),
                    "lastEventAt": iso(f["event_at"]),
                    "configuredAt": iso(f["configured_at"]),
                    "problem": f["problem"],
                    "declined": f["declined"],
                    "hookConfiguredAt": iso(f["hook_configured_at"]),
                    "lastHookEventAt": iso(f["hook_event_at"]),
                    "hookProblem": f["hook_problem"],
                }
                for f in store.feeds()
            ],
            "throttled": [{**t, "account": name(t["account"])} for t in throttled_accounts(store)],
            "daemons": [
                {
                    "worker": d.worker,
                    "host": d.host,
                    "pid": d.pid,
                    "version": d.version,
                    "startedAt": iso(d.started_at),
                    "lastSeenAt": iso(d.last_seen_at),
                    "stoppedAt": iso(d.stopped_at),
                    "running": d.stopped_at is None and (now - d.last_seen_at).total_seconds() <= SEEN_WITHIN,
                }
                for d in store.daemons()
            ],
            "canceledInVtex": store.count_with_code("canceled", CANCELED_IN_VTEX),
            "partlyInvoiced": partly,
            "returned": returned,
            "stuckRules": {
                "thresholdSeconds": {
                    state: limit.total_seconds() for state, limit in rules.thresholds.items()
                },
                "openIntentSeconds": rules.open_intent_after.total_seconds(),
            },
            "stuckTotal": total,
            "stuck": [
                stuck_entry(row, now, rules, graces.get(row.account, grace_period), with_account=many)
                for row in stuck
            ],
        }
    )
    if counts_by_account is not None:
        made["countsByAccount"] = counts_by_account
    orphans = store.unconfigured_accounts(list(graces))
    if orphans:  # only then: the key is absent from the usual report
        made["unconfiguredAccounts"] = orphans
    return made


RECOVERY_SHOWN_FOR = 300.0  # seconds: a probe or ramp older than this is no daemon's any more


def throttled_accounts(store: Store) -> list[Throttle]:
    """Accounts VTEX rate-limited (429) and where their recovery stands: paused (nothing sent),
    probing (one request goes first) or ramping (back to the full budget, doubling each second)."""
    entries = []
    for account, (recovery, now) in store.account_recoveries().items():
        phase = recovery.phase(now)
        latest = max(t or 0.0 for t in (recovery.paused_until, recovery.probe_at, recovery.ramp_from))
        if phase == "normal" or (phase != "paused" and now - latest > RECOVERY_SHOWN_FOR):
            continue
        until = recovery.paused_until or now
        entries.append(
            Throttle(
                account=account,
                phase=phase,
                until=iso(datetime.fromtimestamp(until, UTC)),
                secondsLeft=round(max(0.0, until - now), 1),
                throttlesInARow=recovery.strikes,
                rampRequestsPerSecond=ramp_rate(recovery, now),
            )
        )
    return entries
