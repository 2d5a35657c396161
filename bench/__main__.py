"""`python -m bench <benchmark>`: runs one benchmark and prints its figures as JSON."""

from __future__ import annotations

import argparse
import json

from bench import api_intake, cpu, feed, full, rate_limit, scale_out, transports


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    sub = parser.add_subparsers(dest="benchmark", required=True)
    rate = sub.add_parser(
        "rate-limit", help="throughput and calls per order under a requests-per-minute limit"
    )
    rate.add_argument("--orders", type=int, default=400)
    rate.add_argument("--limit", type=int, default=1200, help="requests per minute, sandbox and client")
    rate.add_argument("--grace", type=float, default=10.0, help="grace period, seconds")
    rate.add_argument("--concurrency", type=int, default=64)
    rate.add_argument(
        "--client-rpm", type=int, default=None, help="daemon budget if not the limit (to provoke 429s)"
    )
    rate.set_defaults(run=rate_limit.run)
    scale = sub.add_parser("scale-out", help="throughput with 1, 2, 4 daemons on PostgreSQL and 1 on SQLite")
    scale.add_argument("--orders", type=int, default=2000)
    scale.add_argument("--latency-ms", type=float, default=50.0)
    scale.add_argument("--grace", type=float, default=2.0, help="grace period, seconds")
    scale.add_argument("--concurrency", type=int, default=64, help="per daemon")
    scale.set_defaults(run=scale_out.run)
    transport = sub.add_parser(
        "transports", help="CPU per order on each HTTP transport, and how each reports a lost answer"
    )
    transport.add_argument("--orders", type=int, default=2000)
    transport.add_argument("--rounds", type=int, default=3, help="runs per transport; the best counts")
    transport.add_argument("--grace", type=float, default=2.0, help="grace period, seconds")
    transport.add_argument("--concurrency", type=int, default=64)
    transport.set_defaults(run=transports.run)
    intake = sub.add_parser("api-intake", help="orders per second and CPU per order through the HTTP API")
    intake.add_argument("--orders", type=int, default=10_000)
    intake.add_argument("--clients", type=int, default=16, help="concurrent HTTP clients")
    intake.add_argument("--batches", type=int, nargs="+", default=[1, 100], help="orders per request")
    intake.set_defaults(run=api_intake.run)
    per_order = sub.add_parser(
        "cpu", help="CPU per order, this checkout against an earlier release, same run"
    )
    per_order.add_argument("--orders", type=int, default=500)
    per_order.add_argument(
        "--against", nargs="*", default=["0.2.0"], help="versions or git revisions to compare with"
    )
    per_order.add_argument(
        "--rounds", type=int, default=3, help="runs per side, alternating; the best counts"
    )
    per_order.add_argument("--grace", type=float, default=2.0, help="grace period, seconds")
    per_order.add_argument("--concurrency", type=int, default=64)
    per_order.set_defaults(run=cpu.run)
    listening = sub.add_parser(
        "feed", help="VTEX requests per order with the Orders Feed as the status source, against polling"
    )
    listening.add_argument("--orders", type=int, default=1000)
    listening.add_argument("--grace", type=float, default=2.0, help="grace period, seconds")
    listening.add_argument("--concurrency", type=int, default=64)
    listening.set_defaults(run=feed.run)
    everything = sub.add_parser("full", help="cost per order, throughput and calls vs a baseline, and scale")
    everything.add_argument("--orders", type=int, nargs="+", default=[1000, 10000])
    everything.add_argument(
        "--latencies", type=float, nargs="+", default=[0.0, 50.0], help="added latency, ms"
    )
    everything.add_argument("--grace", type=float, default=2.0, help="grace period, seconds")
    everything.add_argument("--concurrency", type=int, default=64)
    everything.add_argument("--baseline-orders", type=int, default=40)
    everything.add_argument("--import-lines", type=int, default=100_000)
    everything.add_argument("--status-orders", type=int, default=1_000_000)
    everything.add_argument("--waiting", type=int, nargs=2, default=[10_000, 100_000])
    everything.add_argument("--waiting-seconds", type=float, default=20.0)
    everything.add_argument(
        "--parts",
        nargs="+",
        choices=["flow", "import", "status", "memory"],
        default=["flow", "import", "status", "memory"],
        help="run only these parts (flow: the daemon and the baseline end to end)",
    )
    everything.set_defaults(run=full.run)
    args = parser.parse_args()
    print(json.dumps(args.run(args), indent=2))


if __name__ == "__main__":
    main()
