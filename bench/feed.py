"""VTEX requests per order with the Orders Feed, and with VTEX's Hook, as the status source,
against polling, same run.

For each source the sandbox runs as its own process (a 2 s grace period), the orders are imported
and `orchestrator run --until-done` takes every one to `invoiced`; the sandbox's ledger counts
every request it answered, the feed's reads, commits and configuration included. For the Hook,
`orchestrator serve` runs beside the daemon and takes VTEX's pushes (which are VTEX's requests to
us, not ours to VTEX: the ledger counts them apart).
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from argparse import Namespace
from pathlib import Path
from typing import Any

import httpx

from bench.harness import env_for, machine, run_command, workdir, write_orders
from orchestrator.sandbox.process import SandboxProcess

FEED_CALLS = ("feed-config", "feed-config-set", "feed-read", "feed-commit", "hook-config", "hook-config-set")
WRITES = ("place-order", "authorize-dispatch", "start-handling", "send-invoice")


def run(args: Namespace) -> dict[str, Any]:
    results = {source: _one(source, args) for source in ("poll", "feed", "hook")}
    return {"benchmark": "feed", "machine": machine(), "orders": args.orders, "bySource": results}


def _one(source: str, args: Namespace) -> dict[str, Any]:
    work = workdir(f"feed-{source}")
    sandbox = SandboxProcess("--grace-seconds", str(args.grace), "--lenient", log=work / "sandbox.log")
    try:
        env = env_for(
            f"sqlite:///{work / 'bench.db'}",
            sandbox.url,
            ORCHESTRATOR_GRACE_PERIOD=f"{args.grace}s",
            ORCHESTRATOR_CONCURRENCY=str(args.concurrency),
            ORCHESTRATOR_STATUS_SOURCE=source,
        )
        port = _free_port()
        if source == "hook":
            env["ORCHESTRATOR_HOOK_URL"] = f"http://127.0.0.1:{port}"
        orders = write_orders(work / "orders.jsonl", args.orders)
        imported = run_command(["import", str(orders)], env)
        if imported.exit_code != 0:
            raise RuntimeError(f"the import failed (exit {imported.exit_code})")
        serve = _serve(env, work, port) if source == "hook" else None
        try:
            daemon = run_command(["run", "--until-done"], env, work / "daemon.log")
        finally:
            if serve is not None:
                serve.terminate()
                serve.wait(timeout=30)
        ledger = sandbox.get("ledger")
        pushes = sandbox.get("hook")
    finally:
        sandbox.stop()
    summary = ledger["summary"]
    by = summary["requestsByOperation"]
    entries = [e for e in ledger["orders"] if e["orderId"].startswith("BCH-")]
    per_order = lambda n: round(n / args.orders, 2)  # noqa: E731
    return {
        "requestsPerOrder": per_order(summary["requests"]),
        "writesPerOrder": per_order(sum(by.get(op, 0) for op in WRITES)),
        "getOrdersPerOrder": per_order(by.get("get-order", 0)),
        "feedCallsPerOrder": per_order(sum(by.get(op, 0) for op in FEED_CALLS)),
        "hookPushesPerOrder": per_order(pushes["delivered"]),
        "startHandling409s": sum(e["startHandlingRefused"] for e in entries),
        "invoiced": sum(1 for e in entries if e["invoicedTotal"] >= e["value"] > 0),
        "seconds": round(daemon.wall_seconds, 1),
        "daemonExit": daemon.exit_code,
        "workdir": str(work),
    }


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _serve(env: dict[str, str], work: Path, port: int) -> subprocess.Popen[bytes]:
    """`orchestrator serve` on `port`, the Hook's public URL; up before the daemon."""
    url = f"http://127.0.0.1:{port}"
    log = (work / "serve.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "orchestrator", "serve", "--port", str(port)], env=env, stdout=log, stderr=log
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return process
        except httpx.HTTPError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError(f"serve did not start (see {work / 'serve.log'})")
