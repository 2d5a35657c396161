"""One daemon per SQLite file, whatever path leads to it, and never on a file that is gone.

A deleted or replaced database file went unnoticed: the daemon kept writing into the deleted
inode and everything was lost on exit. A symlink or a hard link bypassed the one-daemon lock.
Real daemons (subprocesses) on real files.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.sandbox.process import SandboxProcess, client_env
from tests.factories import import_lines as lines_of
from tests.processes import start_daemon, wait_for


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[SandboxProcess]:
    process = SandboxProcess("--grace-seconds", "3600", log=tmp_path / "sandbox.log")
    yield process
    process.stop()


def orchestrator(env: dict[str, str], *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "orchestrator", *args],
        input=stdin,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def imported(tmp_path: Path, sandbox: SandboxProcess, name: str = "orders.db") -> tuple[Path, dict[str, str]]:
    path = tmp_path / name
    env = client_env(f"sqlite:///{path}", sandbox.url, ORCHESTRATOR_TICK="100ms")
    assert orchestrator(env, "import", "-", stdin="\n".join(lines_of(5))).returncode == 0
    return path, env


@pytest.mark.parametrize("how", ["deleted", "replaced"])
def test_a_database_file_deleted_or_replaced_under_the_daemon_stops_it(
    tmp_path: Path, sandbox: SandboxProcess, how: str
) -> None:
    """Within a tick the daemon notices, stops, and says why in one line: exit 1, no traceback."""
    path, env = imported(tmp_path, sandbox)
    log = tmp_path / "daemon.log"
    daemon = start_daemon(env, log)
    wait_for(lambda: sandbox.ledger()["summary"]["requests"] >= 10, 30, "the daemon to work")
    if how == "deleted":
        path.unlink()
    else:
        shutil.copy(path, tmp_path / "copy.db")
        os.replace(tmp_path / "copy.db", path)
    assert daemon.wait(timeout=15) == 1
    text = log.read_text()
    assert "Traceback" not in text
    assert f"the database file {path} was deleted or replaced" in text


def test_a_symlink_leads_to_the_same_lock(tmp_path: Path, sandbox: SandboxProcess) -> None:
    """A second daemon through a symlink to the running daemon's file is refused."""
    path, env = imported(tmp_path, sandbox)
    daemon = start_daemon(env, tmp_path / "daemon.log")
    try:
        wait_for(lambda: sandbox.ledger()["summary"]["requests"] >= 10, 30, "the daemon to work")
        link = tmp_path / "elsewhere" / "link.db"
        link.parent.mkdir()
        link.symlink_to(path)
        second = orchestrator({**env, "ORCHESTRATOR_DATABASE_URL": f"sqlite:///{link}"}, "run")
        assert second.returncode == 1 and "already running" in second.stderr, second.stderr
    finally:
        daemon.terminate()
        assert daemon.wait(timeout=30) == 0


def test_a_hard_linked_database_is_refused(tmp_path: Path, sandbox: SandboxProcess) -> None:
    """Two names for one SQLite file can corrupt it (a journal beside each name) and bypass the lock."""
    path, env = imported(tmp_path, sandbox)
    os.link(path, tmp_path / "second-name.db")
    result = orchestrator(env, "run")
    assert result.returncode == 1
    assert "2 hard links" in result.stderr and "Traceback" not in result.stderr
