"""Throughput with 1, 2 and 4 daemons on PostgreSQL, and 1 daemon on SQLite, against the sandbox
with added latency. Orders are imported first; the clock runs from the daemons' start until the
last of them exits (`run --until-done`)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from argparse import Namespace
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa

from bench.harness import env_for, machine, run_command, workdir, write_orders
from orchestrator.sandbox.process import SandboxProcess

POSTGRES = os.environ.get("BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")


def _admin() -> sa.Engine:
    return sa.create_engine(POSTGRES, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)


def _postgres_database() -> tuple[str, str]:
    name = f"bench_{uuid.uuid4().hex[:10]}"
    with _admin().connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    return name, sa.make_url(POSTGRES).set(database=name).render_as_string(hide_password=False)


def _drop(name: str) -> None:
    with _admin().connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def _one(args: Namespace, work: Path, sandbox: SandboxProcess, backend: str, daemons: int) -> dict[str, Any]:
    httpx.post(f"{sandbox.url}/_sandbox/reset", timeout=30)
    dropped = None
    if backend == "postgresql":
        dropped, database_url = _postgres_database()
    else:
        database_url = f"sqlite:///{work / f'scale-{uuid.uuid4().hex[:6]}.db'}"
    try:
        env = env_for(
            database_url,
            sandbox.url,
            ORCHESTRATOR_GRACE_PERIOD=f"{args.grace}s",
            ORCHESTRATOR_CONCURRENCY=str(args.concurrency),
            ORCHESTRATOR_TICK="200ms",
            VTEX_MAX_RPM="600000",
        )
        orders = write_orders(work / "orders.jsonl", args.orders)
        run_command(["import", str(orders)], env)
        started = time.monotonic()
        processes = [
            subprocess.Popen(
                [sys.executable, "-m", "orchestrator", "run", "--until-done"],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            for _ in range(daemons)
        ]
        cpu = 0.0
        for process in processes:
            _pid, status, usage = os.wait4(process.pid, 0)
            cpu += usage.ru_utime + usage.ru_stime
            if os.waitstatus_to_exitcode(status) != 0:
                raise RuntimeError(f"a daemon exited with {status}")
        wall = time.monotonic() - started
        summary = sandbox.get("ledger")["summary"]
    finally:
        if dropped:
            _drop(dropped)
    return {
        "backend": backend,
        "daemons": daemons,
        "orders": args.orders,
        "seconds": round(wall, 1),
        "ordersPerSecond": round(args.orders / wall, 1),
        "daemonCpuMsPerOrder": round(1000 * cpu / args.orders, 2),
        "vtexCallsPerOrder": round(summary["requests"] / args.orders, 2),
        "ordersWithConcurrentRequests": summary["ordersWithConcurrentRequests"],
    }


def run(args: Namespace) -> dict[str, Any]:
    work = workdir("scale")
    sandbox = SandboxProcess(
        "--grace-seconds", str(args.grace), "--latency-ms", str(args.latency_ms), log=work / "sandbox.log"
    )
    try:
        results = [_one(args, work, sandbox, "postgresql", n) for n in (1, 2, 4)]
        results.append(_one(args, work, sandbox, "sqlite", 1))
        sandbox_cpu = sandbox.cpu_seconds()
    finally:
        sandbox.stop()
    return {
        "benchmark": "scale-out",
        "machine": machine(),
        "latencyMs": args.latency_ms,
        "gracePeriodSeconds": args.grace,
        "concurrencyPerDaemon": args.concurrency,
        "sandboxCpuSeconds": round(sandbox_cpu, 1),
        "runs": results,
    }
