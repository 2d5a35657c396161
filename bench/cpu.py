"""CPU per order, this checkout against an earlier release, in the same run on the same machine.

A CPU figure only means something next to another taken on the same machine at the same time, so
this benchmark measures both: the earlier release is checked out from this repository's history
(`git worktree`, into a temporary folder) and run with this environment's interpreter and
libraries, against one sandbox process, on the same order file. Each side imports the orders into
a fresh SQLite database (`orchestrator import`) and drives them to `invoiced`
(`orchestrator run --until-done`); the CPU each process spent (user + system, from wait4) divided
by the orders is the figure. Rounds alternate the sides, so a machine that slows down mid-run
slows both; the best round of each side is reported (the least disturbed by the rest of the
machine), with every round's figure beside it.

`--against` takes a version (`0.2.0`: the commit that set `__version__` to it) or any git
revision.
"""

from __future__ import annotations

import shutil
import subprocess
from argparse import Namespace
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from bench.harness import flow_env, machine, run_command, workdir, write_orders
from orchestrator import __version__
from orchestrator.sandbox.process import SandboxProcess

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Contender:
    name: str
    commit: str
    source: Path | None  # a checkout to put first on PYTHONPATH; None: this one


def _git(*args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(ROOT), *args],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()


@dataclass(frozen=True)
class Round:
    import_cpu: float  # seconds
    run_cpu: float
    orders: int

    @property
    def per_order_ms(self) -> float:
        return 1000 * (self.import_cpu + self.run_cpu) / self.orders


def release_commit(version_or_rev: str) -> str:
    """The commit a version was cut at (the one that set `__version__` to it), or the revision."""
    setting = f'__version__ = "{version_or_rev}"'
    found = _git("log", "--format=%H", "-S", setting, "--", "orchestrator/__init__.py").split()
    if found:
        return found[-1]  # the oldest: where the string appeared
    return _git("rev-parse", "--verify", f"{version_or_rev}^{{commit}}")


def _this_checkout() -> Contender:
    commit = _git("rev-parse", "--short", "HEAD")
    dirty = _git("status", "--porcelain", "--untracked-files=no", "--", "orchestrator", "states")
    return Contender(f"this checkout ({__version__}+)", commit + ("-dirty" if dirty else ""), None)


def _checkout(version_or_rev: str, work: Path) -> Contender:
    commit = release_commit(version_or_rev)
    where = work / f"release-{commit[:8]}"
    _git("worktree", "add", "--detach", str(where), commit)
    return Contender(version_or_rev, commit[:7], where)


def _one_round(
    contender: Contender, index: int, sandbox: SandboxProcess, work: Path, args: Namespace, n: int
) -> Round:
    tag = f"{contender.commit}-{n}"
    database_url = f"sqlite:///{work / f'cpu-{tag}.db'}"
    env = flow_env(database_url, sandbox.url, args)
    if contender.source is not None:
        env["PYTHONPATH"] = str(contender.source)
    # Fresh marketplace ids each time: an order the sandbox holds already would skip its writes.
    start = 10_000_000 * (1 + n) + 1_000_000 * index
    orders = write_orders(work / f"orders-{tag}.jsonl", args.orders, start=start)
    imported = run_command(["import", str(orders)], env)
    ran = run_command(["run", "--until-done"], env, work / f"run-{tag}.log")
    if imported.exit_code != 0 or ran.exit_code != 0:
        raise RuntimeError(f"{contender.name}: import exit {imported.exit_code}, run exit {ran.exit_code}")
    with sa.create_engine(database_url).connect() as conn:
        invoiced = conn.scalar(sa.text("SELECT count(*) FROM orders WHERE state = 'invoiced'"))
    if invoiced != args.orders:
        raise RuntimeError(f"{contender.name}: {invoiced} of {args.orders} orders invoiced")
    return Round(imported.cpu_seconds, ran.cpu_seconds, args.orders)


def run(args: Namespace) -> dict[str, Any]:
    work = workdir("cpu")
    contenders = [_this_checkout(), *(_checkout(rev, work) for rev in args.against)]
    sandbox = SandboxProcess("--grace-seconds", str(args.grace), "--lenient", log=work / "sandbox.log")
    rounds: dict[str, list[Round]] = {c.name: [] for c in contenders}
    try:
        for n in range(args.rounds):
            order = list(enumerate(contenders))
            for index, contender in order if n % 2 == 0 else reversed(order):
                rounds[contender.name].append(_one_round(contender, index, sandbox, work, args, n))
    finally:
        sandbox.stop()
        for contender in contenders:
            if contender.source is not None:
                _git("worktree", "remove", "--force", str(contender.source))
        shutil.rmtree(work, ignore_errors=True)
    return {
        "machine": machine(),
        "orders": args.orders,
        "cpuMsPerOrder": {c.name: _figures(c, rounds[c.name]) for c in contenders},
    }


def _figures(contender: Contender, rounds: list[Round]) -> dict[str, Any]:
    best = min(rounds, key=lambda r: r.per_order_ms)
    return {
        "commit": contender.commit,
        "best": round(best.per_order_ms, 2),
        "bestImportCpuSeconds": round(best.import_cpu, 2),
        "bestRunCpuSeconds": round(best.run_cpu, 2),
        "rounds": [round(r.per_order_ms, 2) for r in rounds],
    }
