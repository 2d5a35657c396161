"""The full benchmark: cost per order, throughput, VTEX calls per order, against a hand-written
baseline in the same run, and scale (import speed, status latency over a million orders, memory).

Everything runs as separate processes: the sandbox (with costly validation switched off, reporting
its own CPU), the daemon (`orchestrator run --until-done`, measured with wait4: CPU user+sys, peak
RSS), the baseline (`python -m bench.baseline`).
"""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import sys
import time
import uuid
from argparse import Namespace
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from bench import bulk
from bench.harness import PeakMemory, env_for, flow_env, machine, run_command, workdir, write_orders
from bench.scale_out import POSTGRES, _admin
from orchestrator.clock import utcnow
from orchestrator.config.stuck_rules import StuckRules
from orchestrator.ops.status import report
from orchestrator.sandbox.process import SandboxProcess
from orchestrator.store.dialects import create_db_engine
from orchestrator.store.migrate import ensure_schema
from orchestrator.store.store import Store

WRITES = (
    "place-order",
    "authorize-dispatch",
    "start-handling",
    "send-invoice",
    "send-tracking",
    "cancel-order",
)


def _ledger_delta(before: dict[str, Any], after: dict[str, Any]) -> dict[str, int]:
    ops = after["requestsByOperation"]
    old = before["requestsByOperation"]
    return {op: ops.get(op, 0) - old.get(op, 0) for op in ops}


def daemon_run(
    args: Namespace, work: Path, sandbox: SandboxProcess, orders: int, latency: float
) -> dict[str, Any]:
    database_url = f"sqlite:///{work / f'daemon-{orders}-{int(latency)}.db'}"
    env = flow_env(database_url, sandbox.url, args)
    # Fresh marketplace ids for every run: the sandbox is shared by the runs at one latency, and an
    # id it already holds would be a duplicate Place that skips the writes being measured.
    path = write_orders(
        work / f"orders-{orders}-{int(latency)}.jsonl", orders, start=int(latency) * 1_000_000 + 10 * orders
    )
    run_command(["import", str(path)], env)
    before, sandbox_cpu = sandbox.get("ledger")["summary"], sandbox.cpu_seconds()
    run = run_command(["run", "--until-done"], env, work / f"daemon-{orders}-{int(latency)}.log")
    after = sandbox.get("ledger")["summary"]
    with sa.create_engine(database_url).connect() as conn:
        invoiced = conn.scalar(sa.text("SELECT count(*) FROM orders WHERE state = 'invoiced'"))
    calls = _ledger_delta(before, after)
    writes = sum(n for op, n in calls.items() if op in WRITES)
    reads = sum(calls.values()) - writes
    return {
        "who": "daemon",
        "latencyMs": latency,
        "orders": orders,
        "invoiced": invoiced,
        "seconds": round(run.wall_seconds, 1),
        "ordersPerSecond": round(orders / run.wall_seconds, 1),
        "cpuMsPerOrder": round(1000 * run.cpu_seconds / orders, 2),
        "peakRssMb": round(run.max_rss_mb, 1),
        "requestsPerOrder": round((reads + writes) / orders, 2),
        "readsPerOrder": round(reads / orders, 2),
        "writesPerOrder": round(writes / orders, 2),
        "429s": after["rateLimited"] - before["rateLimited"],
        "sandboxCpuSeconds": round(sandbox.cpu_seconds() - sandbox_cpu, 1),
        "exit": run.exit_code,
    }


def baseline_run(args: Namespace, work: Path, sandbox: SandboxProcess, latency: float) -> dict[str, Any]:
    path = write_orders(
        work / f"baseline-{int(latency)}.jsonl", args.baseline_orders, start=9_000_000 + int(latency)
    )
    started = time.monotonic()
    process = subprocess.Popen(
        [sys.executable, "-m", "bench.baseline", sandbox.url, str(path), "--poll", "0.5"],
        stdout=subprocess.PIPE,
    )
    assert process.stdout is not None
    memory = PeakMemory(process.pid)
    output = process.stdout.read()
    _pid, _status, usage = os.wait4(process.pid, 0)
    peak = memory.stop()
    wall = time.monotonic() - started
    done = json.loads(output)
    requests = done["read"] + done["write"]
    return {
        "who": "baseline",
        "latencyMs": latency,
        "orders": done["orders"],
        "seconds": round(wall, 1),
        "ordersPerSecond": round(done["orders"] / wall, 2),
        "cpuMsPerOrder": round(1000 * (usage.ru_utime + usage.ru_stime) / done["orders"], 2),
        "peakRssMb": round(peak, 1),
        "requestsPerOrder": round(requests / done["orders"], 2),
        "readsPerOrder": round(done["read"] / done["orders"], 2),
        "writesPerOrder": round(done["write"] / done["orders"], 2),
    }


def import_speed(args: Namespace, work: Path) -> dict[str, Any]:
    path = write_orders(work / "import-100k.jsonl", args.import_lines)
    env = env_for(f"sqlite:///{work / 'import.db'}", "http://127.0.0.1:9")
    run = run_command(["import", str(path)], env)
    return {
        "lines": args.import_lines,
        "seconds": round(run.wall_seconds, 1),
        "linesPerSecond": round(args.import_lines / run.wall_seconds),
        "cpuSeconds": round(run.cpu_seconds, 1),
        "peakRssMb": round(run.max_rss_mb, 1),
    }


def _best_of(fn: Any, times: int = 3) -> float:
    best = float("inf")
    for _ in range(times):
        started = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - started)
    return best


def status_latency(args: Namespace, work: Path, backend: str) -> dict[str, Any]:
    dropped = None
    if backend == "postgresql":
        dropped = f"bench_{uuid.uuid4().hex[:10]}"
        with _admin().connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{dropped}"'))
        url = sa.make_url(POSTGRES).set(database=dropped).render_as_string(hide_password=False)
    else:
        url = f"sqlite:///{work / 'million.db'}"
    try:
        engine, hooks = create_db_engine(url)
        ensure_schema(engine)
        started = time.monotonic()
        bulk.insert(engine, args.status_orders)
        loaded = time.monotonic() - started
        if backend == "postgresql":
            with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.execute(sa.text("VACUUM ANALYZE orders"))
        else:
            with engine.connect() as conn:
                conn.exec_driver_sql("ANALYZE")
        store = Store(engine, hooks)
        grace = __import__("datetime").timedelta(minutes=30)
        rules = StuckRules.parse("", grace)
        now = utcnow()
        plain = _best_of(lambda: report(store, now, rules, grace, limit=0))
        stuck = _best_of(lambda: report(store, now, rules, grace, limit=100))
        listing = _listing_latency(store, now, args.status_orders)
        env = env_for(url, "http://127.0.0.1:9")
        # The whole command as an operator runs it (interpreter start-up included), median of 3.
        cli_plain = statistics.median(run_command(["status"], env).wall_seconds for _ in range(3))
        cli_stuck = statistics.median(run_command(["status", "--stuck"], env).wall_seconds for _ in range(3))
        some = str(5_000_000 + args.status_orders // 2)  # a marketplace order id store staff would quote
        cli_list = statistics.median(run_command(["list"], env).wall_seconds for _ in range(3))
        cli_show = statistics.median(run_command(["show", some], env).wall_seconds for _ in range(3))
        engine.dispose()
    finally:
        if dropped:
            with _admin().connect() as conn:
                conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{dropped}" WITH (FORCE)'))
    return {
        "backend": backend,
        "orders": args.status_orders,
        "loadSeconds": round(loaded, 1),
        "statusSeconds": round(plain, 3),
        "statusStuckSeconds": round(stuck, 3),
        "cliStatusSeconds": round(cli_plain, 2),
        "cliStatusStuckSeconds": round(cli_stuck, 2),
        "cliListSeconds": round(cli_list, 2),
        "cliShowByMarketplaceIdSeconds": round(cli_show, 2),
        "list": listing,
    }


def _listing_latency(store: Store, now: Any, count: int) -> dict[str, float]:
    """`orchestrator list`'s queries over the million orders, best of 3, in seconds."""
    from orchestrator.store.listing import OrderFilter

    middle = str(5_000_000 + count // 2)  # bench.harness numbers marketplace orders from 5,000,000
    page = store.list_orders(now, limit=50)
    for _ in range(99):  # the 100th page, by keyset
        page = store.list_orders(now, limit=50, after=page.next_cursor)
    hundredth = page.next_cursor

    def timed(fn: Any) -> float:
        return round(_best_of(fn), 4)

    return {
        "firstPage": timed(lambda: store.list_orders(now, limit=50)),
        "page101ByKeyset": timed(lambda: store.list_orders(now, limit=50, after=hundredth)),
        "failedWithCode": timed(
            lambda: store.list_orders(now, OrderFilter(states=["failed"], error_code="FMT007"))
        ),
        "handlingByLastChange": timed(
            lambda: store.list_orders(now, OrderFilter(states=["handling"]), sort="changed", limit=50)
        ),
        "byMarketplaceId": timed(lambda: store.find_any(middle)),
        "byInvoiceNumber": timed(lambda: store.find_any(f"NF{middle}")),
    }


def waiting_rss(args: Namespace, work: Path, sandbox: SandboxProcess, waiting: int) -> dict[str, Any]:
    """Peak RSS of a daemon running for a while with `waiting` orders waiting out the grace period."""
    url = f"sqlite:///{work / f'waiting-{waiting}.db'}"
    engine, _hooks = create_db_engine(url)
    ensure_schema(engine)
    bulk.insert(engine, waiting, state="dispatch-authorized")
    engine.dispose()
    env = env_for(url, sandbox.url, ORCHESTRATOR_GRACE_PERIOD="1h", ORCHESTRATOR_METRICS_PORT="0")
    process = subprocess.Popen(
        [sys.executable, "-m", "orchestrator", "run"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    memory = PeakMemory(process.pid)
    time.sleep(args.waiting_seconds)
    process.send_signal(signal.SIGTERM)
    process.wait()
    return {"waitingOrders": waiting, "peakRssMb": round(memory.stop(), 1)}


def run(args: Namespace) -> dict[str, Any]:
    work = workdir("full")
    results: dict[str, Any] = {
        "benchmark": "full",
        "machine": machine(),
        "gracePeriodSeconds": args.grace,
        "concurrency": args.concurrency,
        "flow": [],
        "scale": {},
    }
    for latency in args.latencies if "flow" in args.parts else []:
        sandbox = SandboxProcess(
            "--grace-seconds",
            str(args.grace),
            "--latency-ms",
            str(latency),
            "--lenient",
            log=work / f"sandbox-{int(latency)}.log",
        )
        try:
            runs = [daemon_run(args, work, sandbox, n, latency) for n in args.orders]
            base = baseline_run(args, work, sandbox, latency)
            for entry in runs:
                entry["vsBaseline"] = {
                    "cpuPerOrder": round(base["cpuMsPerOrder"] / entry["cpuMsPerOrder"], 1),
                    "throughput": round(entry["ordersPerSecond"] / base["ordersPerSecond"], 1),
                    "requestsPerOrder": round(base["requestsPerOrder"] / entry["requestsPerOrder"], 2),
                }
            results["flow"] += [*runs, base]
            results[f"sandboxCpuSecondsAt{int(latency)}ms"] = round(sandbox.cpu_seconds(), 1)
        finally:
            sandbox.stop()
        print(json.dumps(results["flow"][-len(args.orders) - 1 :]), file=sys.stderr)
    if "import" in args.parts:
        results["scale"]["import"] = import_speed(args, work)
    if "status" in args.parts:
        results["scale"]["status"] = [status_latency(args, work, b) for b in ("sqlite", "postgresql")]
    if "memory" in args.parts:
        sandbox = SandboxProcess("--grace-seconds", "3600", log=work / "sandbox-rss.log")
        try:
            results["scale"]["waitingRss"] = [waiting_rss(args, work, sandbox, n) for n in args.waiting]
        finally:
            sandbox.stop()
        small, large = results["scale"]["waitingRss"]
        results["scale"]["rssRatio"] = round(large["peakRssMb"] / small["peakRssMb"], 2)
    results["workdir"] = str(work)
    return results
