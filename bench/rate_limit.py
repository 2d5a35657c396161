"""Throughput under a VTEX requests-per-minute limit, and VTEX calls per order.

The sandbox enforces `--limit` requests per minute and the daemon's budget (VTEX_MAX_RPM) is set to
the same figure, with a real grace period in between Authorize and Start handling. The bound is
what the limit allows: limit / calls per order, orders per minute.
"""

from __future__ import annotations

from argparse import Namespace
from typing import Any

from bench.harness import env_for, machine, run_command, workdir, write_orders
from orchestrator.sandbox.process import SandboxProcess


def run(args: Namespace) -> dict[str, Any]:
    work = workdir("rate")
    sandbox = SandboxProcess(
        "--grace-seconds", str(args.grace), "--rpm-limit", str(args.limit), log=work / "sandbox.log"
    )
    try:
        database_url = f"sqlite:///{work / 'bench.db'}"
        env = env_for(
            database_url,
            sandbox.url,
            VTEX_MAX_RPM=str(args.client_rpm or args.limit),
            ORCHESTRATOR_GRACE_PERIOD=f"{args.grace}s",
            ORCHESTRATOR_CONCURRENCY=str(args.concurrency),
        )
        orders = write_orders(work / "orders.jsonl", args.orders)
        run_command(["import", str(orders)], env)
        daemon = run_command(["run", "--until-done"], env, work / "daemon.log")
        log = sandbox.get("requests")
        ledger = sandbox.get("ledger")["summary"]
    finally:
        sandbox.stop()
    arrivals = sorted(entry["at"] for entry in log)
    minutes = (arrivals[-1] - arrivals[0]) / 60
    requests = len(log)
    calls_per_order = requests / args.orders
    achieved = args.orders / minutes
    bound = args.limit / calls_per_order
    return {
        "benchmark": "rate-limit",
        "machine": machine(),
        "orders": args.orders,
        "limitPerMinute": args.limit,
        "clientBudgetPerMinute": args.client_rpm or args.limit,
        "gracePeriodSeconds": args.grace,
        "minutes": round(minutes, 2),
        "ordersPerMinute": round(achieved, 1),
        "boundOrdersPerMinute": round(bound, 1),
        "ofBound": f"{100 * achieved / bound:.1f}%",
        "requestsPerMinute": round(requests / minutes, 1),
        "429s": sum(1 for entry in log if entry["status"] == 429),
        "vtexCallsPerOrder": round(calls_per_order, 2),
        "getOrderCallsPerOrder": round(ledger["requestsByOperation"].get("get-order", 0) / args.orders, 2),
        "daemonExit": daemon.exit_code,
        "workdir": str(work),
    }
