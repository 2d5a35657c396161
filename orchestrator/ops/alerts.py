"""What holds the whole account and who runs, as the status report's alerts: each a sentence and
a kind (ok, warn, alert) that the terminal turns into a colour and the console into a class. The
kind is decided here, once, never read back out of the sentence."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from orchestrator.durations import format_duration
from orchestrator.ops.status import FeedSeen, MissingResource, StatusReport, Throttle
from orchestrator.timefmt import human
from orchestrator.vtex.pauses import OPERATOR_PAUSE

Kind = Literal["ok", "warn", "alert"]


@dataclass(frozen=True)
class Alert:
    kind: Kind
    text: str


def alerts(report: StatusReport, now: datetime) -> list[Alert]:
    """The daemons first, then accounts of orders no table configures, 429s, orders canceled in
    VTEX and account pauses."""
    found = daemon_alerts(report, now)
    for account, count in report.get("unconfiguredAccounts", {}).items():
        found.append(
            Alert(
                "alert",
                f"{count} order(s) belong to account {account}, which the configuration does not have: "
                f"no daemon steps them until an accounts.{account} table is back",
            )
        )
    for entry in report.get("throttled", []):
        found.append(Alert("warn", f"VTEX account {entry['account']}: {throttle_said(entry)}"))
    if report.get("canceledInVtex"):
        found.append(
            Alert(
                "warn",
                f"{report['canceledInVtex']} order(s) were canceled in VTEX, not here: "
                "`orchestrator list --code canceled-in-vtex`",
            )
        )
    for paused in report["accounts"]:
        until = datetime.fromisoformat(paused["pausedUntil"])
        if paused["reason"].startswith(OPERATOR_PAUSE):
            found.append(
                Alert(
                    "alert",
                    f"account {paused['account']}: all work paused until resumed (since "
                    f"{human(datetime.fromisoformat(paused['pausedSince']))}): {paused['reason']}; "
                    f"`orchestrator resume --account {paused['account']}`",
                )
            )
            continue
        found.append(
            Alert(
                "alert",
                f"VTEX account {paused['account']}: all work paused for {format_duration(until - now)} "
                f"(since {human(datetime.fromisoformat(paused['pausedSince']))}): {paused['reason']}",
            )
        )
    for feed in report.get("feeds", []):
        said = feed_said(feed, now)
        if said is not None:
            found.append(Alert("warn", f"VTEX account {feed['account']}: {said}"))
        else:
            found.append(Alert("ok", f"VTEX account {feed['account']}: {listening_said(feed, now)}"))
    for missing in report.get("missingPermissions", []):
        found.append(Alert("alert", f"VTEX account {missing['account']}: {permission_said(missing, now)}"))
    return found


FEED_QUIET = 120.0  # seconds: a feed nobody read for longer is not being listened to


def feed_said(feed: FeedSeen, now: datetime) -> str | None:
    """What is wrong with an account's Orders Feed, in words (None: nothing)."""
    if feed.get("declined"):
        return None  # `auto` chose polling, and says why in `status`'s feed line
    if feed["problem"]:
        return f"the Orders Feed cannot be read ({feed['problem']}); its orders are looked at by polling"
    if feed.get("hookProblem"):
        return f"VTEX's Hook cannot be set ({feed['hookProblem']}); the Orders Feed is read instead"
    read = datetime.fromisoformat(feed["readAt"]) if feed["readAt"] else None
    if feed["reader"] is None or read is None or (now - read).total_seconds() > FEED_QUIET:
        since = f"for {format_duration(now - read)}" if read else "yet"
        return f"no daemon has read the Orders Feed {since}: VTEX's status changes wait in it"
    return None


def listening_said(feed: FeedSeen, now: datetime) -> str:
    """How an account learns VTEX's status, when nothing is wrong with it."""
    if feed.get("declined"):
        return f"polling VTEX, by choice of status_source = auto: {feed['declined']}"

    def ago(at: str | None) -> str:
        return f"{format_duration(now - datetime.fromisoformat(at))} ago" if at else "none yet"

    way = "VTEX's Hook, the Orders Feed as backup" if feed.get("hookConfiguredAt") else "the Orders Feed"
    hook = f", last push {ago(feed.get('lastHookEventAt'))}" if feed.get("hookConfiguredAt") else ""
    return f"listening to {way} (last event {ago(feed['lastEventAt'])}{hook}, read {ago(feed['readAt'])})"


def permission_said(missing: MissingResource, now: datetime) -> str:
    """A missing License Manager resource, in words: what waits, what goes on, what to do."""
    since = human(datetime.fromisoformat(missing["since"]))
    nxt = datetime.fromisoformat(missing["nextTryAt"])
    when = f"in {format_duration(nxt - now)}" if nxt > now else "with the next order"
    return (
        f"the app key lacks the License Manager resource {missing['resource']!r} (VTEX answered 403 to "
        f"{missing['refusedCall']} since {since}): {', '.join(missing['calls'])} wait, the account's "
        f"other calls go on; grant it to the key's role in VTEX Admin (next try {when})"
    )


def throttle_said(entry: Throttle) -> str:
    """Where an account's recovery from 429s stands, in words."""
    in_a_row = entry.get("throttlesInARow") or 1
    times = f", {in_a_row} times in a row" if in_a_row > 1 else ""
    phase = entry.get("phase", "paused")
    if phase == "probing":
        return f"rate limited by VTEX (429{times}); one request goes first to see whether VTEX answers again"
    if phase == "ramping":
        rate = entry.get("rampRequestsPerSecond") or 1
        return f"recovering from VTEX's 429s{times}: sending again, ramping up ({rate:g} requests/s now)"
    return (
        f"rate limited by VTEX (429{times}); every call waits {format_duration(entry['secondsLeft'])} more, "
        "then one request goes first"
    )


def daemon_alerts(report: StatusReport, now: datetime) -> list[Alert]:
    daemons = report.get("daemons", [])
    running = [d for d in daemons if d["running"]]
    if running:
        names = ", ".join(
            f"{d['worker']} on {d['host']} (v{d['version']}, up {_age(d['startedAt'], now)})" for d in running
        )
        return [Alert("ok", f"Daemons running: {len(running)}: {names}")]
    if not daemons:
        return [
            Alert(
                "alert",
                "NO DAEMON has ever run on this database: orders do not move. Start one: `orchestrator run`",
            )
        ]
    last = daemons[0]
    how = "stopped" if last["stoppedAt"] else "last heard of"
    return [
        Alert(
            "alert",
            f"NO DAEMON RUNNING: orders do not move. The last one, {last['worker']} on {last['host']}, "
            f"{how} {_age(last['lastSeenAt'], now)} ago. Start one: `orchestrator run`",
        )
    ]


def _age(stamp: str, now: datetime) -> str:
    return format_duration(now - datetime.fromisoformat(stamp))
