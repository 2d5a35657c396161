"""The daemon as a real process, stopped with a real signal."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from orchestrator.sandbox import ServerThread
from tests.factories import import_record
from tests.processes import wait_for

EXAMPLES = Path(__file__).resolve().parents[2] / "orchestrator" / "examples" / "orders.jsonl"


@pytest.fixture
def env(cli_env: dict[str, str]) -> dict[str, str]:
    return cli_env


def test_daemon_process_stops_cleanly_on_sigterm(
    env: dict[str, str], sandbox_server: ServerThread, tmp_path: Path
) -> None:
    """`orchestrator run` as a real process: SIGTERM makes it release its leases and exit 0."""
    # The orders wait out VTEX's grace period, an hour long on both sides (listening to the feed,
    # VTEX's own end of it, not ours, would move them on).
    sandbox_server.sandbox.oms.config.grace_seconds = 3600
    full_env = {**os.environ, **env, "ORCHESTRATOR_GRACE_PERIOD": "1h"}
    subprocess.run(
        [sys.executable, "-m", "orchestrator", "import", str(EXAMPLES)],
        env=full_env,
        check=True,
        capture_output=True,
    )
    log = (tmp_path / "daemon.log").open("w")
    daemon = subprocess.Popen(
        [sys.executable, "-m", "orchestrator", "run"], env=full_env, stdout=log, stderr=log
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            status = subprocess.run(
                [sys.executable, "-m", "orchestrator", "status", "--json"],
                env=full_env,
                capture_output=True,
                text=True,
                check=True,
            )
            if json.loads(status.stdout)["counts"]["dispatch-authorized"] == 25:
                break
            time.sleep(0.2)
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(timeout=30) == 0
    finally:
        if daemon.poll() is None:
            daemon.kill()
    lines = [
        json.loads(line)
        for line in (tmp_path / "daemon.log").read_text().splitlines()
        if line.startswith("{")
    ]
    assert any(line["event"] == "daemon stopped" for line in lines)
    report = json.loads(
        subprocess.run(
            [sys.executable, "-m", "orchestrator", "status", "--json"],
            env=full_env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )
    assert report["counts"]["dispatch-authorized"] == 25


def test_sighup_reads_rotated_credential_files_without_a_restart(
    database_url: str, sandbox_server: ServerThread, tmp_path: Path
) -> None:
    """An account's token file is rewritten with a new token and the daemon gets SIGHUP: it sends
    the new token from then on (VTEX, which now only takes the new one, never answers 401 to a
    call about an order), and its orders finish, in the same process."""
    sandbox = sandbox_server.sandbox
    key, token = sandbox.oms.config.app_key, sandbox.oms.config.app_token
    token_file = tmp_path / "acme.token"
    token_file.write_text(token + "\n")
    config = tmp_path / "orchestrator.toml"
    config.write_text(
        f'[accounts.acme]\nbase_url = "{sandbox_server.url}"\napp_key_env = "ACME_KEY"\n'
        f'app_token_file = "{token_file}"\ngrace_period = "0.5s"\n'
    )
    env = {
        **os.environ,
        "ORCHESTRATOR_DATABASE_URL": database_url,
        "ORCHESTRATOR_TICK": "100ms",
        "ORCHESTRATOR_LOG_FORMAT": "json",
        "ACME_KEY": key,
    }
    cli = [sys.executable, "-m", "orchestrator", "--config", str(config)]
    log_path = tmp_path / "daemon.log"
    with log_path.open("w") as log:
        daemon = subprocess.Popen([*cli, "run"], env=env, stdout=log, stderr=log)
    try:
        wait_for(lambda: "daemon started" in log_path.read_text(), 30, "the daemon to start")
        token_file.write_text("the-rotated-token\n")
        daemon.send_signal(signal.SIGHUP)
        wait_for(lambda: "credential files read again" in log_path.read_text(), 10, "the SIGHUP")
        sandbox.oms.config.app_token = "the-rotated-token"  # VTEX takes only the new one now
        lines = [json.dumps({"account": "acme", **import_record(n)}) for n in range(5)]
        subprocess.run([*cli, "import", "-"], input="\n".join(lines), text=True, env=env, check=True)
        wait_for(lambda: invoiced(cli, env) == 5, 60, "the orders invoiced with the new token")
        assert daemon.poll() is None  # the same process
    finally:
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(timeout=30) == 0
    # Every call about an order carried the new token. (The Orders Feed's reader, which reads
    # every 2 s, may have had a read on its way when VTEX switched; a 401 there is tried again.)
    about_orders = [e for e in sandbox.oms.ledger.request_log if e["orderId"]]
    assert about_orders and all(e["status"] != 401 for e in about_orders)
    hup = [json.loads(line) for line in log_path.read_text().splitlines() if "read again" in line]
    assert hup[0]["changed"] == ["acme"] and "the-rotated-token" not in log_path.read_text()


def invoiced(cli: list[str], env: dict[str, str]) -> int:
    status = subprocess.run([*cli, "status", "--json"], env=env, capture_output=True, text=True, check=True)
    return int(json.loads(status.stdout)["counts"]["invoiced"])
