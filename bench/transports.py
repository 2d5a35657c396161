"""Which HTTP transport under httpx: CPU per order, and whether a lost answer is told apart.

    python -m bench transports [--orders 2000] [--rounds 3]

Transports: `aiohttp` (the product's: httpx-aiohttp with its errors corrected,
`orchestrator.vtex.transport`), `httpx` (httpx's own, httpcore 1), `httpcore2` (its successor's
pool under httpx, `bench.httpcore2_transport`), `httpx-aiohttp` (the package as it comes).

For each, the same flow as `python -m bench full` (a fresh SQLite database, N orders imported, a
daemon process run until every order is invoiced against a sandbox process) and the daemon's own
CPU per order, best of `--rounds`. The daemon is `python -m bench.transports daemon NAME`: the
product's `run_daemon` with the named transport plugged in, nothing else changed.

CPU is not the only thing a transport must get right. The engine's promise rests on telling "the
request never left" (safe to send again) from "it may have reached VTEX" (look before sending
again). So each transport is also asked one write against a server that reads the whole request
and closes the connection without answering, and the error the client turned it into is printed:
only an unknown outcome (AmbiguousError) is acceptable there.

httpcore2 is not a dependency of the product: `pip install -e '.[bench]'`.
"""

from __future__ import annotations

import asyncio
import os
import sys
from argparse import Namespace
from pathlib import Path
from typing import Any

import httpx

from bench.harness import env_for, machine, run_command, workdir, write_orders
from orchestrator.sandbox.process import SandboxProcess

TRANSPORTS = ("aiohttp", "httpx", "httpcore2", "httpx-aiohttp")


def build(name: str, concurrency: int) -> httpx.AsyncBaseTransport | None:
    """The transport called `name`; None is the product's own (`aiohttp`)."""
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    if name == "aiohttp":
        return None
    if name == "httpx":
        return httpx.AsyncHTTPTransport(limits=limits)
    if name == "httpcore2":
        from bench.httpcore2_transport import Httpcore2Transport

        return Httpcore2Transport(max_connections=concurrency)
    if name == "httpx-aiohttp":
        from httpx_aiohttp import AiohttpTransport

        return AiohttpTransport(limits=limits)
    raise SystemExit(f"unknown transport {name!r}: one of {', '.join(TRANSPORTS)}")


def _daemon(name: str) -> None:
    """The daemon of `orchestrator run --until-done`, on the named transport."""
    from orchestrator.config.settings import load_settings
    from orchestrator.log import configure
    from orchestrator.runner import run_daemon
    from orchestrator.store.open import open_store

    settings = load_settings(None)
    configure(settings.log_level, settings.log_format)
    store = open_store(settings.database_url)
    transport = build(name, settings.concurrency)
    asyncio.run(run_daemon(settings, store, until_done=True, transport=transport))


async def _dropped_write(name: str) -> str:
    """What the client makes of a write whose connection closes after VTEX read it whole."""
    from orchestrator.vtex.client import VtexClient
    from orchestrator.vtex.errors import VtexError

    async def swallow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.lower().split(b"\r\n")
        length = next((int(line.split(b":")[1]) for line in lines if line.startswith(b"content-length")), 0)
        await reader.readexactly(length)
        writer.close()

    server = await asyncio.start_server(swallow, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client = VtexClient(
        f"http://127.0.0.1:{port}",
        app_key="vtexappkey-bench-TRANSPORT",
        app_token="bench-token",
        timeout=5,
        max_connections=4,
        transport=build(name, 4),
    )
    try:
        await client.authorize_dispatch("BCH-1", "1")
        return "answered (wrong: nothing was answered)"
    except VtexError as error:
        return type(error).__name__
    finally:
        await client.aclose()
        server.close()


def _flow(work: Path, sandbox: SandboxProcess, name: str, orders: int, round_: int, args: Namespace) -> float:
    database_url = f"sqlite:///{work / f'{name}-{round_}.db'}"
    env = env_for(
        database_url,
        sandbox.url,
        ORCHESTRATOR_GRACE_PERIOD=f"{args.grace}s",
        ORCHESTRATOR_CONCURRENCY=str(args.concurrency),
        VTEX_MAX_RPM="1000000",
    )
    start = 10_000_000 * (1 + TRANSPORTS.index(name)) + round_ * orders
    path = write_orders(work / f"orders-{name}-{round_}.jsonl", orders, start=start)
    run_command(["import", str(path)], env)
    run = run_command(["daemon", name], env, work / f"daemon-{name}-{round_}.log", module="bench.transports")
    if run.exit_code != 0:
        raise SystemExit(f"the {name} daemon exited {run.exit_code}: see {work}")
    return 1000 * run.cpu_seconds / orders


def run(args: Namespace) -> dict[str, Any]:
    work = workdir("transports")
    sandbox = SandboxProcess("--grace-seconds", str(args.grace), "--lenient", log=work / "sandbox.log")
    figures: dict[str, Any] = {}
    try:
        for round_ in range(args.rounds):
            for name in TRANSPORTS:
                cpu = _flow(work, sandbox, name, args.orders, round_, args)
                figures.setdefault(name, []).append(round(cpu, 2))
    finally:
        sandbox.stop()
    best = {name: min(values) for name, values in figures.items()}
    return {
        "machine": machine(),
        "orders": args.orders,
        "cpuMsPerOrder": figures,
        "bestCpuMsPerOrder": best,
        "vsAiohttp": {name: f"{100 * (best[name] / best['aiohttp'] - 1):+.0f}%" for name in TRANSPORTS},
        "writeDroppedAfterSending": {name: asyncio.run(_dropped_write(name)) for name in TRANSPORTS},
    }


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "daemon":
        _daemon(sys.argv[2])
    else:
        raise SystemExit(f"usage: {os.path.basename(sys.executable)} -m bench.transports daemon NAME")
