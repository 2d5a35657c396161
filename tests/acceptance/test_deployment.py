"""The deployment kit: a daemon under systemd's notify protocol (ready, watchdog, stopping) with a
real process and socket, and the shipped files (alerts, dashboard, container, unit, changelog)
agreeing with the code."""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import sys
import time
import tomllib
from pathlib import Path

from orchestrator import __version__
from orchestrator.engine.monitor.metrics import Metrics
from orchestrator.sandbox.process import SandboxProcess, client_env
from tests.factories import import_lines as lines_of
from tests.processes import run_cli

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"


def test_under_systemd_the_daemon_says_ready_feeds_the_watchdog_and_says_stopping(tmp_path: Path) -> None:
    """Under systemd (NOTIFY_SOCKET, WATCHDOG_USEC) the daemon sends READY once it steps orders, WATCHDOG
    while it ticks, and STOPPING on SIGTERM."""
    sandbox = SandboxProcess("--grace-seconds", "3600", log=tmp_path / "sandbox.log")
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(tmp_path / "notify.sock"))
    notify.settimeout(15)
    daemon = None
    try:
        env = client_env(f"sqlite:///{tmp_path / 'o.db'}", sandbox.url, ORCHESTRATOR_TICK="200ms")
        assert run_cli(env, "import", "-", stdin="\n".join(lines_of(3))).returncode == 0
        env |= {"NOTIFY_SOCKET": str(tmp_path / "notify.sock"), "WATCHDOG_USEC": "1000000"}
        with (tmp_path / "daemon.log").open("w") as log:
            daemon = subprocess.Popen(
                [sys.executable, "-m", "orchestrator", "run"], env=env, stdout=log, stderr=log
            )
        messages = [notify.recv(4096).decode()]
        assert messages[0].startswith("READY=1\nSTATUS=stepping orders")
        started = time.monotonic()
        while time.monotonic() - started < 2.5:
            messages.append(notify.recv(4096).decode())
        assert messages.count("WATCHDOG=1") >= 3  # fed at twice the rate a 1 s watchdog needs
        daemon.send_signal(signal.SIGTERM)
        while (message := notify.recv(4096).decode()) == "WATCHDOG=1":
            pass
        assert message == "STOPPING=1"
        assert daemon.wait(timeout=30) == 0
    finally:
        if daemon is not None and daemon.poll() is None:
            daemon.kill()
        notify.close()
        sandbox.stop()


def _metric_names() -> set[str]:
    """Every series name the daemon's registry can export (labelled families have no samples yet)."""
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"), "gauge": ("",)}
    names = set()
    for family in Metrics().registry.collect():
        names |= {family.name + suffix for suffix in suffixes.get(family.type, ("",))}
    return names


def test_alerts_and_dashboard_use_only_metrics_the_daemon_exports() -> None:
    """The alert rules and the Grafana dashboard name no metric the daemon does not export."""
    exported = _metric_names()
    for path in (DEPLOY / "alerts.yml", DEPLOY / "grafana-dashboard.json"):
        used = set(re.findall(r"\b(orchestrator_[a-z_]+)", path.read_text()))
        assert used, path
        assert used <= exported, (path.name, sorted(used - exported))


def test_the_dashboard_charts_one_account_or_all() -> None:
    """With several accounts every per-account series carries the account's name: the dashboard
    has an `account` variable, and each metric it charts that has the label is filtered by it."""
    dashboard = json.loads((DEPLOY / "grafana-dashboard.json").read_text())
    assert "account" in [v["name"] for v in dashboard["templating"]["list"]]
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    labelled = {"orchestrator_orders", "orchestrator_transitions_total", "orchestrator_account_paused"}
    for name in labelled:
        uses = [e for e in exprs if re.search(rf"\b{name}\b", e)]
        assert uses and all(f'{name}{{account=~"$account"}}' in e for e in uses), (name, uses)


def test_the_container_and_the_unit_run_the_daemon_as_expected() -> None:
    """The Dockerfile runs the daemon as PID 1 and not as root, with a health check; the systemd unit is
    notify-typed, restarted on failure, watched and stopped with SIGTERM."""
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    assert re.search(r"^USER orchestrator$", dockerfile, re.M)  # not root
    assert "HEALTHCHECK" in dockerfile and "/healthz" in dockerfile
    assert 'ENTRYPOINT ["orchestrator"]' in dockerfile  # exec form: the daemon is PID 1 and gets SIGTERM
    unit = (DEPLOY / "orchestrator.service").read_text()
    for line in ("Type=notify", "Restart=on-failure", "WatchdogSec=60s", "KillSignal=SIGTERM"):
        assert re.search(rf"^{re.escape(line)}$", unit, re.M), line


def test_version_license_and_a_dated_changelog_agree() -> None:
    """pyproject's version, `orchestrator --version`, the LICENSE and a dated CHANGELOG entry say the same
    release."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["version"] == __version__
    assert (ROOT / "LICENSE").read_text().startswith("MIT License")
    changelog = (ROOT / "CHANGELOG.md").read_text()
    assert re.search(rf"^## {re.escape(__version__)} \(\d{{4}}-\d\d-\d\d\)$", changelog, re.M)
    version = subprocess.run(
        [sys.executable, "-m", "orchestrator", "--version"], capture_output=True, text=True, check=True
    )
    assert version.stdout.startswith(f"orchestrator {__version__} ")
