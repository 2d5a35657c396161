"""Every failure an operator can cause is one clear line, the right exit code, and no traceback.

One test runs every case as a real `orchestrator` process (in parallel, to stay quick) and checks
each: the exit code, a message that says what is wrong, no traceback, no customer data, and no
database created by a command that only reads.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from orchestrator.intake.line_input import LineInput
from tests import backends
from tests.factories import import_lines as lines_of
from tests.factories import import_record

USAGE, FAILED, REFUSED, NOTHING = 2, 1, 3, 4
PG = "postgresql+psycopg://postgres@127.0.0.1:5432"


@dataclass
class Case:
    name: str
    args: list[str]
    code: int
    says: str
    env: dict[str, str] = field(default_factory=dict)
    stdin: bytes | None = b""
    lines: int = 1  # lines of output on standard error at most
    before: Callable[[], Any] | None = None
    after: Callable[[], None] | None = None
    preexec: Callable[[], None] | None = None
    inside: list[str] = field(default_factory=list)  # a command the process runs under


def refused_import(name: str, path: str, says: str) -> Case:
    """A file the import refuses: each problem on its line, then one line saying nothing was imported."""
    return Case(name, ["import", path], REFUSED, says, lines=2)


def run(case: Case, base_env: dict[str, str]) -> tuple[Case, subprocess.CompletedProcess[bytes]]:
    if case.before is not None:
        case.before()
    try:
        result = subprocess.run(
            [*case.inside, sys.executable, "-m", "orchestrator", *case.args],
            input=case.stdin,
            stdin=subprocess.DEVNULL if case.stdin is None else None,
            env={**base_env, **case.env},
            capture_output=True,
            timeout=90,
            check=False,
            preexec_fn=case.preexec,
        )
    finally:
        if case.after is not None:
            case.after()
    return case, result


def immutable(path: Path, on: bool) -> None:
    """Read-only even for root (the tests may run as root, whom permissions do not stop)."""
    if os.geteuid() == 0:
        subprocess.run(["chattr", "+i" if on else "-i", str(path)], check=True)
    else:
        path.chmod(0o555 if on else 0o755) if path.is_dir() else path.chmod(0o444 if on else 0o644)


def full_disk(directory: Path, orders: str) -> Case:
    """A real full disk (a tiny tmpfs in a mount namespace of its own) where we may mount one;
    otherwise a file size limit, which SQLite reports as an I/O error rather than a full disk."""
    directory.mkdir()
    env = {"ORCHESTRATOR_DATABASE_URL": f"sqlite:///{directory / 'full.db'}"}
    if os.geteuid() == 0 and shutil.which("unshare"):
        mount = f'mount -t tmpfs -o size=160k tmpfs {directory} && exec "$@"'
        return Case(
            "full disk",
            ["import", orders],
            FAILED,
            "disk holding the database is full",
            env,
            inside=["unshare", "-m", "sh", "-c", mount, "sh"],
        )

    def small_files() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (48 * 1024, 48 * 1024))

    return Case("full disk", ["import", orders], FAILED, "disk", env, preexec=small_files)


def closed_stdin() -> None:
    os.close(0)


def taken_port() -> Iterator[int]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(1)
    yield sock.getsockname()[1]
    sock.close()


@pytest.fixture
def busy_port() -> Iterator[int]:
    yield from taken_port()


def write(path: Path, data: bytes | str) -> str:
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return str(path)


def line_with(change: Callable[[dict[str, Any]], None]) -> str:
    record = import_record(1)
    change(record)
    return json.dumps(record)


def test_every_operator_mistake_is_one_clear_line(tmp_path: Path, busy_port: int) -> None:
    """Database, input, ports and settings: one line each, the documented exit code, no traceback."""
    good = tmp_path / "good.db"
    base = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "ORCHESTRATOR_DATABASE_URL": f"sqlite:///{good}",
        "VTEX_BASE_URL": "http://127.0.0.1:9",
        "VTEX_APP_KEY": "vtexappkey-test-KEY",
        "VTEX_APP_TOKEN": "test-token-1234",
        "ORCHESTRATOR_LOG_FORMAT": "json",
    }
    subprocess.run(
        [sys.executable, "-m", "orchestrator", "import", "-"],
        input="\n".join(lines_of(2)).encode(),
        env=base,
        check=True,
        capture_output=True,
    )
    readonly_dir = tmp_path / "locked"
    readonly_dir.mkdir()
    locked_db = readonly_dir / "orders.db"
    subprocess.run(
        [sys.executable, "-m", "orchestrator", "migrate"],
        env={**base, "ORCHESTRATOR_DATABASE_URL": f"sqlite:///{locked_db}"},
        check=True,
        capture_output=True,
    )
    readonly_file = tmp_path / "readonly.db"
    subprocess.run(
        [sys.executable, "-m", "orchestrator", "migrate"],
        env={**base, "ORCHESTRATOR_DATABASE_URL": f"sqlite:///{readonly_file}"},
        check=True,
        capture_output=True,
    )
    orders = write(tmp_path / "orders.jsonl", "\n".join(lines_of(3)))
    many_orders = write(tmp_path / "many.jsonl", "\n".join(lines_of(300)))
    mistyped = tmp_path / "typo" / "ordres.db"
    typo = tmp_path / "ordres.db"
    sqlite = lambda path: {"ORCHESTRATOR_DATABASE_URL": f"sqlite:///{path}"}  # noqa: E731
    line = lines_of(1)[0]
    latin1 = (line + "\n" + lines_of(1, start=5)[0].replace("Praia", "Praça")).encode("latin-1")
    bad_inputs: list[tuple[str, bytes | str, str]] = [
        ("binary file", b"\x00\x01\xfe" * 50, "binary data"),
        ("utf-16 file", "\n".join(lines_of(2)).encode("utf-16"), "UTF-16"),
        ("latin-1 line", latin1, "line 2: (line): not UTF-8 text"),
        ("deep nesting", "[" * 100_000, "nested too deeply"),
        ("huge integer", line.replace("1100", "9" * 5000, 1), "too many digits"),
        (
            "money over the column",
            line_with(lambda r: (r["order"].update(marketplacePaymentValue=10**17), r.pop("invoice"))),
            "must be at most",
        ),
        ("nan", line.replace(": 1100", ": NaN", 1), "NaN is not a JSON number"),
        ("infinity", line.replace(": 900", ": -Infinity", 1), "-Infinity is not a JSON number"),
        ("lone surrogate", line.replace('"Ana"', '"\\ud800"'), "unpaired surrogate"),
        ("superscript digit", line_with(lambda r: r["invoice"].update(invoiceValue="²")), "invoiceValue"),
        (
            "id over the column",
            line_with(lambda r: r["order"].update(marketplaceOrderId="9" * 101)),
            "100 characters",
        ),
        (
            "zero value",
            line_with(lambda r: (r["order"].update(marketplacePaymentValue=0), r.pop("invoice"))),
            "FMT0042",
        ),
    ]
    cases = [
        # -- the database ---------------------------------------------------------------------
        Case(
            "postgres down",
            ["status"],
            FAILED,
            "refused the connection",
            {"ORCHESTRATOR_DATABASE_URL": "postgresql://postgres@127.0.0.1:1/x"},
        ),
        Case(
            "unknown database",
            ["status"],
            FAILED,
            "does not exist",
            {"ORCHESTRATOR_DATABASE_URL": f"{PG}/no_such_database_xyz"},
        ),
        Case(
            "unknown role",
            ["status"],
            FAILED,
            "user does not exist",
            {"ORCHESTRATOR_DATABASE_URL": "postgresql://no_such_role_xyz@127.0.0.1:5432/postgres"},
        ),
        Case(
            "unresolvable host",
            ["status"],
            FAILED,
            "does not resolve",
            {"ORCHESTRATOR_DATABASE_URL": "postgresql://postgres@no-such-host.invalid/x"},
        ),
        Case("missing directory", ["import", orders], USAGE, "no directory", sqlite(mistyped)),
        Case("url is a directory", ["status"], USAGE, "is a directory", sqlite(tmp_path)),
        Case(
            "read-only directory",
            ["import", orders],
            FAILED,
            "read-only",
            sqlite(locked_db),
            before=lambda: immutable(readonly_dir, True),
            after=lambda: immutable(readonly_dir, False),
        ),
        Case(
            "read-only file",
            ["import", orders],
            FAILED,
            "read-only",
            sqlite(readonly_file),
            before=lambda: immutable(readonly_file, True),
            after=lambda: immutable(readonly_file, False),
        ),
        full_disk(tmp_path / "small", many_orders),
        Case(
            "corrupt file",
            ["status"],
            FAILED,
            "not a SQLite database",
            sqlite(write(tmp_path / "junk.db", os.urandom(8192))),
        ),
        Case(
            "unsupported scheme",
            ["status"],
            USAGE,
            "unsupported database 'mysql'",
            {"ORCHESTRATOR_DATABASE_URL": "mysql://root@127.0.0.1/x"},
        ),
        Case(
            "not a url", ["status"], USAGE, "not a database URL", {"ORCHESTRATOR_DATABASE_URL": "orders.db"}
        ),
        # -- read-only commands never create a database ----------------------------------------
        Case("status on a typo", ["status"], USAGE, "no database at", sqlite(typo)),
        Case("show on a typo", ["show", "ABC-1"], USAGE, "no database at", sqlite(typo)),
        Case("retry on a typo", ["retry", "--failed"], USAGE, "no database at", sqlite(typo)),
        Case("list on a typo", ["list"], USAGE, "no database at", sqlite(typo)),
        Case("serve on a typo", ["serve", "--port", "0"], USAGE, "no database at", sqlite(typo)),
        Case("serve port taken", ["serve", "--port", str(busy_port)], FAILED, "already in use", sqlite(typo)),
        # -- what is imported ----------------------------------------------------------------
        *(
            refused_import(name, write(tmp_path / f"in-{i}", data), says)
            for i, (name, data, says) in enumerate(bad_inputs)
        ),
        Case("empty file", ["import", write(tmp_path / "empty", b"")], NOTHING, "holds no orders"),
        Case(
            "stdin closed",
            ["import", "-"],
            USAGE,
            "standard input is closed",
            stdin=None,
            preexec=closed_stdin,
        ),
        Case("stdin binary", ["import", "-"], REFUSED, "binary data", stdin=b"\x00\xff" * 100, lines=2),
        Case("import a directory", ["import", str(tmp_path)], USAGE, "is a directory"),
        Case("track file missing", ["track", "--file", str(tmp_path / "nope.jsonl")], USAGE, "no such file"),
        Case(
            "track file binary",
            ["track", "--file", write(tmp_path / "tb", b"\x00\x01" * 10)],
            REFUSED,
            "binary data",
            lines=2,
        ),
        # -- ports and settings ------------------------------------------------------------------
        Case("metrics port taken", ["run", "--metrics-port", str(busy_port)], FAILED, "already in use"),
        Case("sandbox port taken", ["sandbox", "--port", str(busy_port)], FAILED, "already in use"),
        Case(
            "grace period inf",
            ["status"],
            USAGE,
            "ORCHESTRATOR_GRACE_PERIOD",
            {"ORCHESTRATOR_GRACE_PERIOD": "inf"},
        ),
        Case("older-than garbage", ["status", "--older-than", "garbage"], USAGE, "--older-than"),
        Case("older-than 5x", ["status", "--older-than", "5x"], USAGE, "--older-than"),
        Case(
            "metrics host unknown",
            ["run", "--metrics-port", "0"],
            FAILED,
            "unknown host",
            {"ORCHESTRATOR_METRICS_HOST": "no-such-host.invalid"},
        ),
        Case("malformed base url", ["check"], USAGE, "VTEX_BASE_URL", {"VTEX_BASE_URL": "htp:/vtex"}),
        Case("newline in token", ["check"], USAGE, "VTEX_APP_TOKEN", {"VTEX_APP_TOKEN": "abc-token\n"}),
        # -- small cases -----------------------------------------------------------------------
        Case("retry nothing failed", ["retry", "--failed"], NOTHING, "no order is failed"),
        Case("unknown order", ["show", "ZZZ-1"], NOTHING, "no order has 'ZZZ-1' as order id"),
    ]
    with ThreadPoolExecutor(max_workers=6) as pool:
        results = list(pool.map(lambda case: run(case, base), cases))
    problems = []
    for case, result in results:
        err = result.stderr.decode("utf-8", "replace")
        out = result.stdout.decode("utf-8", "replace")
        lines = [line for line in err.splitlines() if line.strip()]
        why = []
        if result.returncode != case.code:
            why.append(f"exit {result.returncode}, expected {case.code}")
        if case.says not in err:
            why.append(f"does not say {case.says!r}")
        if "Traceback" in err + out:
            why.append("prints a traceback")
        if len(lines) > case.lines:
            why.append(f"{len(lines)} lines on standard error")
        if "ana.silva@example.com" in err + out:
            why.append("shows customer data")
        if why:
            problems.append(f"{case.name}: {'; '.join(why)}\n    stderr: {err.strip()[:500]}")
    assert problems == [], "\n".join(problems)
    assert not typo.exists() and not mistyped.parent.exists(), "a read-only command created a database"


def test_a_file_deleted_between_the_two_passes_is_still_read_whole(tmp_path: Path) -> None:
    """The import reads its input twice through one open handle: deleting the file in between
    changes nothing (a file changed in place is caught by the import's digest)."""
    path = tmp_path / "orders.jsonl"
    path.write_text("\n".join(lines_of(3)))
    with LineInput.open(str(path)) as source:
        first = list(source())
        path.unlink()
        assert list(source()) == first and len(first) == 3


def test_sigterm_with_the_database_unusable_is_one_line(tmp_path: Path) -> None:
    """The daemon stops on SIGTERM even when it cannot write its last outcomes: exit 1, no traceback."""
    pytest.importorskip("psycopg")
    from tests import backends

    name, url = backends.create_database()
    try:
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "ORCHESTRATOR_DATABASE_URL": url,
            "VTEX_BASE_URL": "http://127.0.0.1:9",
            "VTEX_APP_KEY": "vtexappkey-test-KEY",
            "VTEX_APP_TOKEN": "test-token-1234",
            "ORCHESTRATOR_LOG_FORMAT": "json",
            "ORCHESTRATOR_TICK": "100ms",
        }
        subprocess.run(
            [sys.executable, "-m", "orchestrator", "import", "-"],
            input="\n".join(lines_of(3)).encode(),
            env=env,
            check=True,
            capture_output=True,
        )
        log = tmp_path / "daemon.log"
        with log.open("w") as out:
            daemon = subprocess.Popen(
                [sys.executable, "-m", "orchestrator", "run"], env=env, stdout=out, stderr=out
            )
        from tests.processes import wait_for

        wait_for(lambda: "daemon started" in log.read_text(), 30, "the daemon to start")
        backends.make_read_only(name)
        wait_for(lambda: "claim failed" in log.read_text(), 30, "a claim to fail")
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(timeout=30) == 1
    finally:
        backends.drop_database(name)
    text = log.read_text()
    assert "Traceback" not in text
    last = text.strip().splitlines()[-1]
    assert last.startswith("stopped: the database is unusable") or "read-only" in last, last


def test_a_failed_import_shows_no_customer_data(tmp_path: Path) -> None:
    """PostgreSQL refuses the write (a read-only database): one line, and no name, e-mail or CPF
    from the orders (SQLAlchemy would print every parameter of the INSERT)."""
    name, url = backends.create_database()
    try:
        backends.make_read_only(name)
        orders = tmp_path / "orders.jsonl"
        orders.write_text("\n".join(lines_of(3)))
        result = subprocess.run(
            [sys.executable, "-m", "orchestrator", "import", str(orders)],
            env={"ORCHESTRATOR_DATABASE_URL": url, "PATH": "/usr/bin:/bin"},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        backends.drop_database(name)
    assert result.returncode == 1, result.stderr
    assert "read-only" in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    for private in ("ana.silva@example.com", "12345678909", "Praia de Botafogo", "Silva"):
        assert private not in result.stderr + result.stdout
