"""VTEX requests per order with the Orders Feed as the status source, against polling, same run.

For each source the sandbox runs as its own process (a 2 s grace period), the orders are imported
and `orchestrator run --until-done` takes every one to `invoiced`; the sandbox's ledger counts
every request it answered, the feed's reads, commits and configuration included.
"""

from __future__ import annotations

from argparse import Namespace
from typing import Any

from bench.harness import env_for, machine, run_command, workdir, write_orders
from orchestrator.sandbox.process import SandboxProcess

FEED_CALLS = ("feed-config", "feed-config-set", "feed-read", "feed-commit")
WRITES = ("place-order", "authorize-dispatch", "start-handling", "send-invoice")


def run(args: Namespace) -> dict[str, Any]:
    results = {source: _one(source, args) for source in ("poll", "feed")}
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
        orders = write_orders(work / "orders.jsonl", args.orders)
        run_command(["import", str(orders)], env)
        daemon = run_command(["run", "--until-done"], env, work / "daemon.log")
        ledger = sandbox.get("ledger")
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
        "startHandling409s": sum(e["startHandlingRefused"] for e in entries),
        "invoiced": sum(1 for e in entries if e["invoicedTotal"] >= e["value"] > 0),
        "seconds": round(daemon.wall_seconds, 1),
        "daemonExit": daemon.exit_code,
        "workdir": str(work),
    }
