"""Several VTEX accounts in one deployment, each as isolated as if it ran alone.

Three accounts of one sandbox (each its own orders, credentials and faults, under /accounts/NAME),
100 orders each, run by real daemon processes: one on SQLite, two sharing PostgreSQL.
- `storm` answers 429 to everything for 20 s (Retry-After 1 s): its 20 due orders get one burst
  in, then about one request per pause (the pauses lengthen), never a burst at a pause's end;
- `locked` rejects the credentials: its app token was rotated in VTEX;
- `calm` finishes its orders as fast as when it runs alone (within 20 %);
- the new token is written into `locked`'s token file and `resume --account locked` run: the
  same daemon processes read it and finish `locked`'s orders, and `storm`'s once VTEX answers;
- no request ever reaches an account with another account's credentials.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from orchestrator.clock import utcnow
from orchestrator.intake.importer import import_lines
from orchestrator.sandbox import FaultConfig, Faults, Sandbox, SandboxConfig, SandboxOms, ServerThread
from orchestrator.store.open import open_store
from orchestrator.store.store import Store
from tests import backends
from tests.factories import import_record
from tests.processes import run_cli, wait_for

ACCOUNTS = ("storm", "locked", "calm")
PER_ACCOUNT = 100
STORM_ORDERS = 20
STORM_SECONDS = 8.0


@dataclass
class World:
    server: ServerThread
    accounts: dict[str, Sandbox]

    def base_url(self, name: str) -> str:
        return f"{self.server.url}/accounts/{name}"


@pytest.fixture
def world() -> Iterator[World]:
    root = Sandbox(SandboxOms(SandboxConfig(grace_seconds=1)))
    accounts = {
        name: root.add_account(
            name,
            Sandbox(
                SandboxOms(
                    SandboxConfig(
                        account=name, grace_seconds=1, app_key=f"key-{name}", app_token=f"token-{name}"
                    )
                )
            ),
        )
        for name in ACCOUNTS
    }
    with ServerThread(root) as server:
        yield World(server, accounts)
    assert root.app_keys_seen == {}, "a request went to the single-account URL"


def write_config(path: Path, world: World, names: tuple[str, ...]) -> Path:
    tables = [
        f'[accounts.{name}]\nbase_url = "{world.base_url(name)}"\n'
        f'app_key_env = "{name.upper()}_KEY"\napp_token_file = "{path.parent / (name + ".token")}"\n'
        'grace_period = "1s"\n'
        for name in names
    ]
    for name in names:
        (path.parent / f"{name}.token").write_text(f"token-{name}\n")  # a secret file's line break
    path.write_text("\n".join(tables))
    return path


def environment(database_url: str) -> dict[str, str]:
    return {
        **os.environ,
        "ORCHESTRATOR_DATABASE_URL": database_url,
        "ORCHESTRATOR_LOG_FORMAT": "json",
        "ORCHESTRATOR_TICK": "200ms",
        **{f"{name.upper()}_KEY": f"key-{name}" for name in ACCOUNTS},
    }


def orders_of(name: str) -> int:
    return STORM_ORDERS if name == "storm" else PER_ACCOUNT


def import_orders(store: Store, names: tuple[str, ...], start: int = 0) -> None:
    lines = [
        json.dumps({"account": name, **import_record(n)})
        for name in names
        for n in range(start, start + orders_of(name))
    ]
    report = import_lines(lines, store, utcnow(), accounts=list(names))
    assert len(report.imported) == sum(orders_of(name) for name in names), report.problems


def storm_requests(sandbox: Sandbox) -> tuple[list[float], list[float]]:
    """The storm's requests: those of its first second (the burst), and every one after it."""
    times = sorted(entry["at"] for entry in sandbox.oms.ledger.request_log)
    return [t for t in times if t < times[0] + 1], [t - times[0] for t in times if t >= times[0] + 1]


def invoiced(store: Store, account: str) -> int:
    return store.account_state_counts().get(account, {}).get("invoiced", 0)


def active_seconds(sandbox: Sandbox) -> float:
    """From the account's first request to its last: the time its orders took, daemon start-up aside."""
    times = [entry["at"] for entry in sandbox.oms.ledger.request_log]
    return max(times) - min(times)


def start_daemons(count: int, config: Path, env: dict[str, str], logs: Path) -> list[subprocess.Popen[bytes]]:
    daemons = []
    for i in range(count):
        with (logs / f"daemon{i}.log").open("a") as out:
            daemons.append(
                subprocess.Popen(
                    [sys.executable, "-m", "orchestrator", "--config", str(config), "run"],
                    env={**env, "ORCHESTRATOR_WORKER_ID": f"d{i}"},
                    stdout=out,
                    stderr=out,
                )
            )
    return daemons


def stop(daemons: list[subprocess.Popen[bytes]]) -> None:
    for daemon in daemons:
        if daemon.poll() is None:
            daemon.send_signal(signal.SIGTERM)
    for daemon in daemons:
        assert daemon.wait(timeout=60) == 0


@pytest.fixture(params=["sqlite-1", "postgresql-2"])
def deployment(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[list[str], int]]:
    """Two fresh databases (the account alone, then all three) and how many daemons share each."""
    backend, daemons = request.param.split("-")
    if backend == "sqlite":
        yield [f"sqlite:///{tmp_path / 'alone.db'}", f"sqlite:///{tmp_path / 'all.db'}"], int(daemons)
        return
    backends.require_postgres()
    created = [backends.create_database() for _ in range(2)]
    try:
        yield [url for _name, url in created], int(daemons)
    finally:
        for name, _url in created:
            backends.drop_database(name)


@pytest.mark.alone  # "as fast as alone": a comparison of two timings taken within this test
def test_one_accounts_trouble_never_slows_another(
    world: World, deployment: tuple[list[str], int], tmp_path: Path
) -> None:
    """The calm account finishes within 20 % of its time alone beside a 429 storm and rotated
    credentials; the storm gets one burst and then one probe per pause; `resume` makes the same
    daemons read the rotated token file; no account ever sees another's credentials."""
    (alone_url, all_url), daemon_count = deployment
    calm = world.accounts["calm"]

    # The calm account alone: how long its 100 orders take.
    store = open_store(alone_url)
    import_orders(store, ("calm",), start=1000)  # ids of its own: the calm sandbox keeps them
    config = write_config(tmp_path / "calm.toml", world, ("calm",))
    daemons = start_daemons(daemon_count, config, environment(alone_url), tmp_path)
    try:
        wait_for(lambda: invoiced(store, "calm") == PER_ACCOUNT, 120, "the calm account alone")
    finally:
        stop(daemons)
    alone = active_seconds(calm)
    calm.oms.ledger.request_log.clear()

    # All three, with two of them in trouble.
    storm = world.accounts["storm"]
    storm.faults = Faults(FaultConfig(rate_limit=1.0, retry_after_seconds=1))
    locked = world.accounts["locked"]
    locked.oms.config.app_token = "token-locked-rotated"  # rotated in VTEX, not yet here
    store = open_store(all_url)
    import_orders(store, ACCOUNTS)
    config = write_config(tmp_path / "all.toml", world, ACCOUNTS)
    env = environment(all_url)
    daemons = start_daemons(daemon_count, config, env, tmp_path)
    try:
        wait_for(lambda: invoiced(store, "calm") == PER_ACCOUNT, 120, "the calm account beside the others")
        together = active_seconds(calm)
        assert together <= alone * 1.2, f"calm took {together:.2f}s beside the others, {alone:.2f}s alone"
        assert invoiced(store, "storm") == 0 and invoiced(store, "locked") == 0
        paused = {p.account: p.reason for p in store.account_pauses()}
        assert any("rejected the credentials" in reason for reason in paused.values()), paused

        # The storm lasts 8 s: one burst, then about one request per pause, however long.
        first = min(entry["at"] for entry in storm.oms.ledger.request_log)
        wait_for(lambda: time.time() - first >= STORM_SECONDS, 60, "8 seconds of storm")
        burst, later = storm_requests(storm)
        assert len(burst) <= STORM_ORDERS, burst
        assert 2 <= len(later) <= 6, later  # probes after pauses of 1, 2, 4, 8 s...
        assert all(b - a >= 0.9 for a, b in itertools.pairwise(later)), later  # one at a time
        status = json.loads(run_cli(env, "--config", str(config), "status", "--json").stdout)
        assert any(t["phase"] in ("paused", "probing") for t in status["throttled"]), status["throttled"]

        # The storm passes; the new token is written into the file; `resume` checks it, and the
        # running daemons read it again: no restart.
        storm.faults = Faults()
        (tmp_path / "locked.token").write_text("token-locked-rotated\n")
        pids = [d.pid for d in daemons]
        resumed = run_cli(env, "--config", str(config), "resume", "--account", "locked")
        assert resumed.returncode == 0, resumed.stderr
        assert f"running daemons read {tmp_path / 'locked.token'} again" in resumed.stdout
        wait_for(
            lambda: all(invoiced(store, name) == orders_of(name) for name in ACCOUNTS),
            120,
            "every account's orders invoiced once the faults were lifted",
        )
        assert [d.pid for d in daemons if d.poll() is None] == pids  # the same processes did it
    finally:
        stop(daemons)

    for name, sandbox in world.accounts.items():
        assert set(sandbox.app_keys_seen) == {f"key-{name}"}, (name, sandbox.app_keys_seen)
        assert len(sandbox.oms.orders) == orders_of(name) * (2 if name == "calm" else 1)
    print(f"calm account: {alone:.2f}s alone, {together:.2f}s beside a 429 storm and rejected credentials")
    print(
        f"storm account: {len(burst)} requests in its first second, then at {[round(t, 1) for t in later]} s"
    )
