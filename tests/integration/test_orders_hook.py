"""An account that listens to VTEX's Hook (`status_source = hook`), end to end: the sandbox pushes
each status change over a real socket to `serve`'s `/vtex/hook/{account}`, which keeps it in the
inbox; the real daemon acts on it. The feed stays as the backup, read rarely. A notification
without the daemon's secret, or from another account's key, is refused; VTEX's ping is answered;
a Hook VTEX deleted (after 3 days without notifications) is set again by the watchdog."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from structlog.testing import capture_logs
from typer.testing import CliRunner

from orchestrator.cli import app
from orchestrator.clock import utcnow
from orchestrator.config.settings import Settings, load_settings
from orchestrator.engine.clients import build_client
from orchestrator.engine.feed import FeedReader, HookWanted
from orchestrator.intake.importer import import_lines
from orchestrator.log import get_logger
from orchestrator.sandbox import Sandbox, ServerThread
from orchestrator.sandbox.hook import HookFaults
from orchestrator.serving import bind, url_of
from orchestrator.store.open import open_store
from orchestrator.store.thread import DatabaseThread
from orchestrator.vtex import hook
from orchestrator.web.bounded_http import BACKLOG
from states.vtex_status import FEED_STATUSES
from tests.api_server import serve_api
from tests.daemon_runs import import_once_listening, run_until, states
from tests.factories import import_lines as lines_of


def history(store: Any, order_id: str) -> list[Any]:
    row = store.find(order_id)
    return store.events(row.id) if row is not None else []


def test_vtex_pushes_every_change_and_the_feed_is_only_the_backup(
    make_sandbox: Callable[..., Sandbox], make_settings: Callable[..., Settings]
) -> None:
    """VTEX's grace period is 0.5 s, the configured one 10 times longer. Every order starts
    handling within 5 s of VTEX's ready-for-handling, pushed by the Hook, and is invoiced without a
    Get order; the feed, read every 30 s, hands out only what the Hook already brought."""
    sandbox = make_sandbox(grace_seconds=0.5)
    sock = bind("127.0.0.1", 0, backlog=BACKLOG)
    public = url_of(sock)
    with ServerThread(sandbox) as vtex:
        settings = make_settings(
            sandbox, vtex.url, grace_period=timedelta(seconds=5), status_source="hook", hook_url=public
        )
        with serve_api(settings, sandbox, sock) as served:
            store = open_store(settings.database_url, create=True)
            steady = import_once_listening(store, settings.account().key, lines_of(12), "hook_configured_at")
            with capture_logs() as logs:
                run_until(
                    settings, store, lambda: states(store) == {"invoiced": 12}, timeout=40, during=steady
                )
            pushed = served.store.feed(settings.account().key)
    assert states(store) == {"invoiced": 12}
    ledger = sandbox.oms.ledger
    for order_id, at in (
        (r["orderId"], r["at"]) for r in ledger.request_log if r["operation"] == "start-handling"
    ):
        authorized = sandbox.oms.orders[order_id].authorized_at
        assert authorized is not None and at - authorized < 5.0, (order_id, at - authorized)
    looked = [r["orderId"] for r in ledger.request_log if r["operation"] == "get-order"]
    troubles = [e for e in logs if e.get("log_level") in ("warning", "error")]
    assert looked == [], "\n".join(  # each order that looked, with its whole history, to say why
        [
            f"{order_id}: {e['at']} {e['kind']} {e['action']} {e['from_state']}->{e['to_state']} "
            f"{e['message']}"
            for order_id in sorted(set(looked))
            for e in history(store, order_id)
        ]
        + [f"log: {e}" for e in troubles]
    )
    assert all(e.start_handling_refused == 0 for e in ledger.entries())
    counts = sandbox.oms.hook.counts()
    assert counts["pings"] == 1 and counts["delivered"] >= 24
    assert hook.configured_as_needed(
        sandbox.oms.hook.view(),
        hook.configuration(
            hook.hook_url(public, "default"),
            hook.secret(sandbox.oms.config.app_token, settings.account().key),
            tuple(sandbox.oms.hook.view()["filter"]["status"]),  # type: ignore[index]
        ),
    )
    # The backup: at most a read at start and one every 30 s, not one every 2 s.
    assert ledger.requests_by_operation.get("feed-read", 0) <= 3
    assert pushed is not None and pushed["hook_event_at"] is not None and pushed["hook_problem"] is None
    secret = hook.secret(sandbox.oms.config.app_token, settings.account().key)
    assert secret not in repr(logs) and sandbox.oms.config.app_token not in repr(logs)


@pytest.mark.sqlite_only
def test_pushes_vtex_tries_again_arrive_and_take_effect_once(
    make_sandbox: Callable[..., Sandbox], make_settings: Callable[..., Settings]
) -> None:
    """Half of the pushes fail at first (VTEX tries again 1 s, 2 s, 4 s... later): every order
    is invoiced, every VTEX write applied once."""
    sandbox = make_sandbox(grace_seconds=0.3)
    sandbox.oms.hook.faults = HookFaults(lose=0.5)
    sock = bind("127.0.0.1", 0, backlog=BACKLOG)
    with ServerThread(sandbox) as vtex:
        settings = make_settings(
            sandbox, vtex.url, grace_period=timedelta(minutes=5), status_source="hook", hook_url=url_of(sock)
        )
        with serve_api(settings, sandbox, sock):
            store = open_store(settings.database_url)
            import_lines(lines_of(6), store, utcnow())
            run_until(settings, store, lambda: states(store) == {"invoiced": 6}, timeout=60)
    assert states(store) == {"invoiced": 6}
    assert sandbox.oms.hook.counts()["failedTries"] > 0
    summary = sandbox.oms.ledger.summary()
    assert summary["ordersWithDuplicatePlace"] == 0 and summary["ordersWithDuplicateStartHandling"] == 0
    assert all(len(e.invoice_numbers) == 1 for e in sandbox.oms.ledger.entries())


def test_what_serve_takes_from_the_hook(
    make_sandbox: Callable[..., Sandbox], make_settings: Callable[..., Settings]
) -> None:
    """The ping is answered; a notification is taken only with the secret of the account's token
    and its own Origin, kept once however often VTEX sends it, and makes its order due."""
    sandbox = make_sandbox(grace_seconds=0.5)
    sock = bind("127.0.0.1", 0, backlog=BACKLOG)
    with ServerThread(sandbox) as vtex:
        settings = make_settings(sandbox, vtex.url, status_source="hook", hook_url=url_of(sock))
        account = settings.account()
        with serve_api(settings, sandbox, sock) as served:
            url = f"{served.url}/vtex/hook/default"
            secret = hook.secret(sandbox.oms.config.app_token, account.key)
            notification = {
                "Domain": "Fulfillment",
                "OrderId": "SBX-1-01",
                "State": "canceled",
                "LastState": "window-to-cancel",
                "LastChange": "2026-12-05T10:00:00.0000000Z",
                "CurrentChange": "2026-12-05T10:01:00.1234567Z",
                "Origin": {"Account": "sandbox", "Key": sandbox.oms.config.app_key},
            }
            with capture_logs() as logs:
                ping = httpx.post(url, json={"hookConfig": "ping"})
                no_secret = httpx.post(url, json=notification)
                wrong = httpx.post(url, json=notification, headers={hook.SECRET_HEADER: "x" * 64})
                other_key = httpx.post(
                    url,
                    json={**notification, "Origin": {"Account": "sandbox", "Key": "vtexappkey-someone-else"}},
                    headers={hook.SECRET_HEADER: secret},
                )
                not_vtex = httpx.post(url, json={"hello": 1}, headers={hook.SECRET_HEADER: secret})
                taken = [
                    httpx.post(url, json=notification, headers={hook.SECRET_HEADER: secret}) for _ in range(3)
                ]
                elsewhere = httpx.post(
                    f"{served.url}/vtex/hook/nobody", json=notification, headers={hook.SECRET_HEADER: secret}
                )
            inbox = served.store.feed_events_of(account.key, "SBX-1-01")
    assert ping.status_code == 200
    assert no_secret.status_code == 401 and wrong.status_code == 401
    assert other_key.status_code == 403 and "Origin.Key" in other_key.json()["error"]
    assert not_vtex.status_code == 400 and "OrderId" in not_vtex.json()["error"]
    assert [t.status_code for t in taken] == [200, 200, 200]
    assert elsewhere.status_code == 404
    assert len(inbox) == 1 and inbox[0]["state"] == "canceled"
    logged = repr(logs)
    assert secret not in logged and sandbox.oms.config.app_token not in logged


def test_the_watchdog_sets_again_a_hook_vtex_deleted(
    make_sandbox: Callable[..., Sandbox], make_settings: Callable[..., Settings]
) -> None:
    """VTEX deletes a Hook after 3 days without notifications: within the hour the reader sees it
    gone and sets it again (a fake clock stands for the hour). A Hook VTEX refuses (serve did not
    answer its ping) is a note for `status`, tried again a minute later, and the feed is read as
    often as without a Hook meanwhile."""
    sandbox = make_sandbox(grace_seconds=0.5)
    sock = bind("127.0.0.1", 0, backlog=BACKLOG)
    with ServerThread(sandbox) as vtex:
        settings = make_settings(sandbox, vtex.url, status_source="hook", hook_url=url_of(sock))
        with serve_api(settings, sandbox, sock) as served:
            now = [utcnow()]
            seen = asyncio.run(_reader_rounds(settings, served.store, now, sandbox, url_of(sock)))
    assert seen == {
        "first": (1, True),
        "deleted, within the hour": (1, False),
        "an hour on": (2, True),
        "serve away": (3, False),
        "a minute on, serve back": (4, True),
    }


async def _reader_rounds(
    settings: Settings, store: object, now: list[datetime], sandbox: Sandbox, public: str
) -> dict[str, tuple[int, bool]]:
    account = settings.account()
    db = DatabaseThread(store)  # type: ignore[arg-type]
    seen: dict[str, tuple[int, bool]] = {}
    async with build_client(settings, account) as client:
        reader = FeedReader(
            account.key,
            account.name,
            client,
            db,
            "test-reader",
            lambda: now[0],
            lambda: None,
            lambda _works: None,
            get_logger(component="test"),
            choice="hook",
            hook=HookWanted(hook.hook_url(public, account.name), lambda: client.hook_secret(account.key)),
        )

        async def round_(name: str, advance: timedelta = timedelta(0)) -> None:
            now[0] += advance
            await reader.once()
            seen[name] = (sandbox.oms.hook.pings, sandbox.oms.hook.view() is not None)

        await round_("first")
        sandbox.oms.hook.delete()
        await round_("deleted, within the hour", timedelta(minutes=30))
        await round_("an hour on", timedelta(minutes=31))
        sandbox.oms.hook.delete()
        reader.hook = HookWanted(hook.hook_url("http://127.0.0.1:9", account.name), reader.hook.secret)  # type: ignore[union-attr]
        await round_("serve away", timedelta(hours=1))
        assert reader.hook_problem is not None and "ping" in reader.hook_problem
        assert reader._read_due(now[0])
        reader.hook = HookWanted(hook.hook_url(public, account.name), reader.hook.secret)  # type: ignore[union-attr]
        await round_("a minute on, serve back", timedelta(minutes=1))
    db.close()
    return seen


@pytest.mark.sqlite_only
def test_check_says_whether_the_hook_pushes_where_serve_is(
    sandbox_server: ServerThread, database_url: str
) -> None:
    """`check` reads the Hook's configuration (never changes it): none yet, then pushing to
    serve's URL with the secret of the token in use, then set otherwise."""
    sandbox = sandbox_server.sandbox
    config = sandbox.oms.config
    public = "https://orders.example.com"
    env = {
        "ORCHESTRATOR_DATABASE_URL": database_url,
        "VTEX_BASE_URL": sandbox_server.url,
        "VTEX_APP_KEY": config.app_key,
        "VTEX_APP_TOKEN": config.app_token,
        "ORCHESTRATOR_STATUS_SOURCE": "hook",
        "ORCHESTRATOR_HOOK_URL": public,
        "COLUMNS": "240",
    }
    runner = CliRunner(env=env)
    assert runner.invoke(app, ["migrate"]).exit_code == 0
    first = runner.invoke(app, ["check"])
    assert "no Hook yet (a daemon sets it to https://orders.example.com/vtex/hook/default)" in first.output
    key = load_settings(None, **{"vtex_base_url": sandbox_server.url}).account().key
    wanted = hook.configuration(
        hook.hook_url(public, "default"), hook.secret(config.app_token, key), FEED_STATUSES
    )
    sandbox.oms.hook.configure(wanted)  # as the daemon sets it (VTEX's ping is the sandbox's business)
    pushing = runner.invoke(app, ["check"])
    assert "the Hook pushes to https://orders.example.com/vtex/hook/default" in pushing.output
    sandbox.oms.hook.configure(hook.configuration("https://elsewhere.example.com/x", "s", FEED_STATUSES))
    otherwise = runner.invoke(app, ["check"])
    assert "the Hook is set otherwise" in otherwise.output
    assert config.app_token not in pushing.output + otherwise.output
